//! Token sampling: greedy, temperature, top-k, top-p, with a seedable RNG of our own.

/// xoshiro256** seeded through splitmix64: small, fast, reproducible across platforms.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        Self {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    /// The generator of sample `stream` of a request seeded with `seed`.
    pub fn for_stream(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        Self::new(splitmix64(&mut x))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller), for test weights.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Log-probability of `token` under `softmax(logits)`.
pub fn log_prob(logits: &[f32], token: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    (logits[token] - max) - sum.ln() as f32
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

/// Settings of one sampling step.
#[derive(Debug, Clone, Copy)]
pub struct SamplerConfig {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Keep the k most likely tokens.
    pub top_k: Option<usize>,
}

/// Samples one token from `logits`; `scratch` is reused between calls.
pub fn sample(
    logits: &[f32],
    cfg: &SamplerConfig,
    rng: &mut Rng,
    scratch: &mut Vec<(f32, u32)>,
) -> usize {
    if cfg.temperature <= 0.0 || cfg.top_k == Some(1) || logits.len() <= 1 {
        return argmax(logits);
    }
    let inv_t = 1.0 / cfg.temperature;
    scratch.clear();
    scratch.extend(
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (l * inv_t, i as u32)),
    );
    let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0);
    let k = cfg.top_k.unwrap_or(usize::MAX).max(1);
    if k < scratch.len() {
        scratch.select_nth_unstable_by(k - 1, desc);
        scratch.truncate(k);
    }
    // Probabilities (unnormalised) relative to the maximum.
    let max = scratch
        .iter()
        .map(|x| x.0)
        .fold(f32::NEG_INFINITY, f32::max);
    for x in scratch.iter_mut() {
        x.0 = (x.0 - max).exp();
    }
    let total: f64 = scratch.iter().map(|x| x.0 as f64).sum();
    if cfg.top_p < 1.0 {
        // Sort the head first; fall back to a full sort when the head holds too little mass.
        let target = cfg.top_p as f64 * total;
        let head = 256.min(scratch.len());
        if head < scratch.len() {
            scratch.select_nth_unstable_by(head - 1, desc);
        }
        scratch[..head].sort_unstable_by(desc);
        let mut acc = 0.0;
        let mut cut = None;
        for (i, x) in scratch[..head].iter().enumerate() {
            acc += x.0 as f64;
            if acc >= target {
                cut = Some(i + 1);
                break;
            }
        }
        let cut = match cut {
            Some(c) => c,
            None => {
                scratch.sort_unstable_by(desc);
                let mut acc = 0.0;
                let mut c = scratch.len();
                for (i, x) in scratch.iter().enumerate() {
                    acc += x.0 as f64;
                    if acc >= target {
                        c = i + 1;
                        break;
                    }
                }
                c
            }
        };
        scratch.truncate(cut.max(1));
    }
    let total: f64 = scratch.iter().map(|x| x.0 as f64).sum();
    let mut r = rng.next_f64() * total;
    for x in scratch.iter() {
        r -= x.0 as f64;
        if r < 0.0 {
            return x.1 as usize;
        }
    }
    scratch
        .last()
        .map(|x| x.1 as usize)
        .unwrap_or_else(|| argmax(logits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_streams_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut s0 = Rng::for_stream(7, 0);
        let mut s1 = Rng::for_stream(7, 1);
        assert_ne!(s0.next_u64(), s1.next_u64());
        let mut r = Rng::new(3);
        let m: f64 = (0..10000).map(|_| r.next_f64()).sum::<f64>() / 10000.0;
        assert!((m - 0.5).abs() < 0.02, "{m}");
    }

    #[test]
    fn greedy_topk_topp() {
        let logits = [0.0f32, 3.0, 1.0, 2.9];
        let mut rng = Rng::new(0);
        let mut s = Vec::new();
        let g = SamplerConfig {
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
        };
        assert_eq!(sample(&logits, &g, &mut rng, &mut s), 1);
        // top_k = 2 only ever yields tokens 1 or 3.
        let k2 = SamplerConfig {
            temperature: 1.0,
            top_p: 1.0,
            top_k: Some(2),
        };
        let mut seen = [0usize; 4];
        for _ in 0..500 {
            seen[sample(&logits, &k2, &mut rng, &mut s)] += 1;
        }
        assert_eq!(seen[0] + seen[2], 0);
        assert!(seen[1] > 100 && seen[3] > 100, "{seen:?}");
        // A tiny top_p keeps only the most likely token.
        let p = SamplerConfig {
            temperature: 1.0,
            top_p: 0.01,
            top_k: None,
        };
        for _ in 0..50 {
            assert_eq!(sample(&logits, &p, &mut rng, &mut s), 1);
        }
        // Full sampling follows the softmax roughly.
        let t = SamplerConfig {
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
        };
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            seen[sample(&logits, &t, &mut rng, &mut s)] += 1;
        }
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        for i in 0..4 {
            let expect = logits[i].exp() / z * 4000.0;
            assert!(
                (seen[i] as f32 - expect).abs() < 5.0 * expect.sqrt() + 5.0,
                "{seen:?}"
            );
        }
        assert!((log_prob(&logits, 1) - (3.0 - z.ln())).abs() < 1e-5);
    }
}
