//! Per-shard checkpoints of one stream, kept in `<dir>/<stream>.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::sync::Mutex;

/// The last processed sequence number of each shard, persisted atomically.
#[derive(Debug)]
pub struct CheckpointStore {
    path: PathBuf,
    checkpoints: Mutex<BTreeMap<String, String>>,
}

impl CheckpointStore {
    /// Loads `<dir>/<stream>.json`, or starts empty when it does not exist yet.
    pub async fn open(dir: &Path, stream_name: &str) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("failed to create checkpoint directory {}", dir.display()))?;
        let path = Self::path_for(dir, stream_name);
        let checkpoints = match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("failed to parse checkpoints in {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read {}", path.display()));
            }
        };
        Ok(Self {
            path,
            checkpoints: Mutex::new(checkpoints),
        })
    }

    /// The file that holds a stream's checkpoints.
    pub fn path_for(dir: &Path, stream_name: &str) -> PathBuf {
        dir.join(format!("{stream_name}.json"))
    }

    pub async fn get(&self, shard_id: &str) -> Option<String> {
        self.checkpoints.lock().await.get(shard_id).cloned()
    }

    /// Records `sequence_number` as the shard's last processed record and writes the file
    /// (temp file, fsync, rename) before returning.
    pub async fn save(&self, shard_id: &str, sequence_number: &str) -> anyhow::Result<()> {
        // The lock is held across the write so that concurrent shards never interleave files.
        let mut checkpoints = self.checkpoints.lock().await;
        checkpoints.insert(shard_id.to_owned(), sequence_number.to_owned());
        let json = serde_json::to_vec_pretty(&*checkpoints).expect("a map of strings serializes");
        let tmp = self.path.with_extension("json.tmp");
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .context("checkpoint writer panicked")?
        .with_context(|| format!("failed to write checkpoints to {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checkpoints_are_read_back_after_reopening() {
        let dir = std::env::temp_dir().join(format!("esm-checkpoint-{}", uuid::Uuid::new_v4()));
        let store = CheckpointStore::open(&dir, "audit").await.unwrap();
        assert_eq!(store.get("shardId-000000000000").await, None);

        store.save("shardId-000000000000", "100").await.unwrap();
        store.save("shardId-000000000001", "200").await.unwrap();
        store.save("shardId-000000000000", "101").await.unwrap();

        let reopened = CheckpointStore::open(&dir, "audit").await.unwrap();
        assert_eq!(
            reopened.get("shardId-000000000000").await.as_deref(),
            Some("101")
        );
        assert_eq!(
            reopened.get("shardId-000000000001").await.as_deref(),
            Some("200")
        );
        let file: BTreeMap<String, String> =
            serde_json::from_slice(&std::fs::read(dir.join("audit.json")).unwrap()).unwrap();
        assert_eq!(file.len(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_corrupt_checkpoint_file_fails_instead_of_starting_over() {
        let dir = std::env::temp_dir().join(format!("esm-checkpoint-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("audit.json"), b"{not json").unwrap();

        let err = CheckpointStore::open(&dir, "audit").await.unwrap_err();

        assert!(err.to_string().contains("failed to parse checkpoints"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
