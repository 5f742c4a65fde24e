//! Saving and restoring a conversation (KV cache, token history, next-token logits), so an app
//! can resume without re-reading the prompt. The file is versioned, tied to the exact model
//! (a fingerprint of its hyperparameters and tensor table) and checksummed; every mismatch is
//! an error naming what differs. Written to a temporary file and renamed, so a crash while
//! saving never destroys the previous save.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::session::Session;
use std::path::Path;

const MAGIC: &[u8; 8] = b"PLMSESS\0";
const VERSION: u32 = 1;

/// FNV-1a, 64-bit: a checksum against corruption and a model fingerprint (not security).
fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01B3);
    }
    h
}
const FNV_SEED: u64 = 0xCBF2_9CE4_8422_2325;

/// Identifies the model a session was computed with: hyperparameters and tensor table.
pub fn model_fingerprint(model: &Model) -> u64 {
    let mut h = fnv(format!("{:?}", model.hparams).as_bytes(), FNV_SEED);
    for t in &model.file.header.tensors {
        h = fnv(format!("{}:{}:{:?}:{}", t.name, t.ty, t.dims, t.offset).as_bytes(), h);
    }
    h
}

fn err(path: &Path, why: impl Into<String>) -> Error {
    Error::SessionFile { path: path.to_path_buf(), why: why.into() }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end =
            self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| err(self.path, "is truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
}

impl Session {
    /// Writes the conversation to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let model = self.model();
        let (tokens, logits, kv) = self.state();
        let mut b = Vec::with_capacity(kv.len() + 4 * tokens.len() + 64);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&model_fingerprint(model).to_le_bytes());
        b.extend_from_slice(&self.kv_type().id().to_le_bytes());
        b.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
        tokens.iter().for_each(|t| b.extend_from_slice(&t.to_le_bytes()));
        b.extend_from_slice(&(logits.len() as u64).to_le_bytes());
        logits.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
        b.extend_from_slice(&kv);
        let sum = fnv(&b, FNV_SEED);
        b.extend_from_slice(&sum.to_le_bytes());
        crate::atomic_file::write_atomic(path, |w| w.write_all(&b).map_err(|e| Error::io(path, e)))
    }

    /// Replaces this session's conversation with the one saved in `path`. On any error the
    /// session is left as it was.
    pub fn restore(&mut self, path: &Path) -> Result<()> {
        let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if b.len() < MAGIC.len() + 12 || &b[..8] != MAGIC {
            return Err(err(path, "is not a PocketLM session file"));
        }
        let (body, sum) = b.split_at(b.len() - 8);
        if fnv(body, FNV_SEED).to_le_bytes() != sum {
            return Err(err(path, "is corrupted (checksum mismatch)"));
        }
        let mut r = Reader { b: body, at: 8, path };
        let version = r.u32()?;
        if version != VERSION {
            return Err(err(path, format!("has version {version}; this build reads version {VERSION}")));
        }
        if r.u64()? != model_fingerprint(self.model()) {
            return Err(err(path, "was saved with a different model"));
        }
        let kv_id = r.u32()?;
        if kv_id != self.kv_type().id() {
            return Err(err(
                path,
                format!("holds a KV cache of type id {kv_id}; this session uses {}", self.kv_type().name()),
            ));
        }
        let n = r.u64()? as usize;
        if n > self.n_ctx() {
            return Err(err(path, format!("holds {n} tokens; this session's context is {}", self.n_ctx())));
        }
        let tokens: Vec<u32> =
            r.take(4 * n)?.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let nl = r.u64()? as usize;
        let logits: Vec<f32> = r
            .take(nl.checked_mul(4).ok_or_else(|| err(path, "is corrupted"))?)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let nkv = r.u64()? as usize;
        let kv = r.take(nkv)?.to_vec();
        if r.at != body.len() {
            return Err(err(path, "has trailing data"));
        }
        self.set_state(tokens, logits, &kv).map_err(|e| err(path, format!("does not fit this session: {e}")))
    }
}
