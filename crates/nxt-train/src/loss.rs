//! The completion-only next-token loss of a padded micro-batch.

use candle_core::{Result, Tensor, D};
use nxt_engine::Transformer;

use crate::data::Example;
use crate::fused_ce::{lm_head_nll, DEFAULT_CHUNK_ROWS};

/// The summed negative log-likelihood of the completion tokens of `batch` (right-padded
/// with `pad` to the longest example; padding and prompt positions carry no loss), and the
/// number of tokens summed over. Logits are computed only at the positions that carry loss,
/// a chunk at a time ([`lm_head_nll`]: the `(tokens, vocab)` logits are never held whole);
/// half-precision logits are promoted to F32 before the softmax.
pub fn batch_nll(model: &Transformer, batch: &[&Example], pad: u32) -> Result<(Tensor, usize)> {
    let len = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    if len < 2 {
        candle_core::bail!("batch_nll: every example needs at least two tokens");
    }
    let t = len - 1;
    let b = batch.len();
    let mut input = vec![pad; b * t];
    let mut positions: Vec<u32> = Vec::new();
    let mut targets: Vec<u32> = Vec::new();
    for (bi, ex) in batch.iter().enumerate() {
        for j in 0..ex.ids.len() - 1 {
            input[bi * t + j] = ex.ids[j];
            if j + 1 >= ex.prompt_len.max(1) {
                positions.push((bi * t + j) as u32);
                targets.push(ex.ids[j + 1]);
            }
        }
    }
    let dev = model.device();
    let x = Tensor::from_vec(input, (b, t), dev)?;
    let h = model.forward_hidden(&x, None)?;
    let hidden = h.dim(D::Minus1)?;
    let n = positions.len();
    let idx = Tensor::from_vec(positions, n, dev)?;
    let h = h.reshape((b * t, hidden))?.index_select(&idx, 0)?;
    let nll = lm_head_nll(&h, &model.lm_head, &targets, DEFAULT_CHUNK_ROWS)?.sum_all()?;
    Ok((nll, n))
}
