//! The text and bytes of single sampled tokens, for log-probability entries (what vLLM and
//! OpenAI put in `logprobs.content[].token` / `.bytes`).

use tokenizers::decoders::DecoderWrapper;
use tokenizers::Tokenizer;

use serde::{Deserialize, Serialize};

/// One sampled token as text: the decoded piece and its UTF-8 bytes (a token inside a
/// multi-byte character has the bytes of its part; its text is their lossy decoding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPiece {
    /// The decoded text of the token.
    pub text: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// GPT-2's byte-to-character table of byte-level BPE, inverted: the byte a vocabulary
/// character stands for.
fn byte_level_byte(c: char) -> Option<u8> {
    let c = c as u32;
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if c < 256 && printable(c) {
        return Some(c as u8);
    }
    // The other 68 bytes are mapped, in order, to U+0100 onwards.
    let offset = c.checked_sub(256)?;
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth(offset as usize)
        .map(|b| b as u8)
}

fn is_byte_level(d: &DecoderWrapper) -> bool {
    match d {
        DecoderWrapper::ByteLevel(_) => true,
        DecoderWrapper::Sequence(s) => s.get_decoders().iter().any(is_byte_level),
        _ => false,
    }
}

/// The bytes of a `<0xNN>` byte-fallback token (SentencePiece/Llama vocabularies).
fn byte_fallback(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

/// The piece of token `id`: its decoded text (special tokens as their vocabulary entry, a
/// token that is part of a UTF-8 sequence as the lossy decoding of its own bytes) and its
/// raw bytes where the vocabulary says them (byte-level BPE, byte fallback), otherwise the
/// text's UTF-8.
pub fn token_piece(tokenizer: &Tokenizer, id: u32) -> TokenPiece {
    let vocab = tokenizer.id_to_token(id).unwrap_or_default();
    let byte_level = tokenizer.get_decoder().is_some_and(is_byte_level);
    let bytes: Option<Vec<u8>> = if let Some(b) = byte_fallback(&vocab) {
        Some(vec![b])
    } else if byte_level && !vocab.is_empty() {
        vocab.chars().map(byte_level_byte).collect()
    } else {
        None
    };
    let special = tokenizer
        .get_added_vocabulary()
        .get_added_tokens_decoder()
        .get(&id)
        .is_some_and(|t| t.special);
    let text = if special {
        vocab.clone()
    } else if let Some(b) = &bytes {
        String::from_utf8_lossy(b).into_owned()
    } else {
        tokenizer
            .decode(&[id], false)
            .unwrap_or_else(|_| vocab.clone())
    };
    let bytes = bytes.unwrap_or_else(|| text.as_bytes().to_vec());
    TokenPiece { text, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_level_table_round_trips_every_byte() {
        // Rebuild GPT-2's bytes_to_unicode and check the inverse on all 256 bytes.
        let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        let mut n = 0;
        for b in 0u32..256 {
            let c = if printable(b) {
                char::from_u32(b)
            } else {
                n += 1;
                char::from_u32(255 + n)
            }
            .expect("char");
            assert_eq!(byte_level_byte(c), Some(b as u8), "byte {b}");
        }
        assert_eq!(byte_level_byte('Ċ'), Some(b'\n'));
        assert_eq!(byte_level_byte('Ġ'), Some(b' '));
        assert_eq!(byte_fallback("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_fallback("<0x0>"), None);
    }
}
