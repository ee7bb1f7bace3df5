//! Where a download goes: a file written and hashed on a thread of its own, so that hashing overlaps
//! the transfer instead of following it (a second pass over 200 MB costs as much as the download).

use std::io::Write;
use std::path::Path;

use sha2::Digest as _;

/// What the bytes that went through a sink hash to.
#[derive(Debug, Clone)]
pub(crate) struct Computed {
    pub blake3: String,
    /// `sha256:<hex>`, when it was asked for.
    pub sha256: Option<String>,
    pub size: u64,
}

pub(crate) struct Sink {
    tx: Option<tokio::sync::mpsc::Sender<Vec<bytes::Bytes>>>,
    worker: Option<std::thread::JoinHandle<std::io::Result<Computed>>>,
    /// Chunks not handed over yet: a network read is ~16 KB, and waking the writer thread for
    /// each one costs more than hashing it.
    pending: Vec<bytes::Bytes>,
    pending_len: usize,
}

/// How much is handed to the writer thread at once.
const BATCH: usize = 1 << 20;

impl Sink {
    /// A sink writing to `path` (created or truncated); SHA-256 is computed too when `sha256`.
    pub fn create(path: &Path, sha256: bool) -> std::io::Result<Sink> {
        let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<bytes::Bytes>>(16);
        let worker = std::thread::Builder::new()
            .name("kiln-download".into())
            .spawn(move || {
                let mut b3 = blake3::Hasher::new();
                let mut sha = sha256.then(sha2::Sha256::new);
                let mut size = 0u64;
                while let Some(batch) = rx.blocking_recv() {
                    for chunk in batch {
                        file.write_all(&chunk)?;
                        b3.update(&chunk);
                        if let Some(sha) = sha.as_mut() {
                            sha.update(&chunk);
                        }
                        size += chunk.len() as u64;
                    }
                }
                file.flush()?;
                Ok(Computed {
                    blake3: b3.finalize().to_hex().to_string(),
                    sha256: sha.map(|s| {
                        let hex: String = s.finalize().iter().map(|b| format!("{b:02x}")).collect();
                        format!("sha256:{hex}")
                    }),
                    size,
                })
            })?;
        Ok(Sink {
            tx: Some(tx),
            worker: Some(worker),
            pending: Vec::new(),
            pending_len: 0,
        })
    }

    /// Hands a chunk to the writer. An error means the writer stopped: [`Sink::finish`] says why.
    pub async fn write(&mut self, chunk: bytes::Bytes) -> Result<(), ()> {
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len < BATCH {
            return Ok(());
        }
        self.hand_over().await
    }

    async fn hand_over(&mut self) -> Result<(), ()> {
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        match &self.tx {
            Some(tx) => tx.send(batch).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Waits for every chunk to be written; returns the digests.
    pub async fn finish(mut self) -> std::io::Result<Computed> {
        let _ = self.hand_over().await;
        self.tx = None;
        let worker = self.worker.take();
        tokio::task::spawn_blocking(move || match worker.map(|w| w.join()) {
            Some(Ok(result)) => result,
            _ => Err(std::io::Error::other("the download writer stopped")),
        })
        .await
        .map_err(std::io::Error::other)?
    }
}
