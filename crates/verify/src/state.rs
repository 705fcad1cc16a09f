//! The verifier's memory between runs, as immudb's client keeps its last verified state and a
//! transparency-log witness its last cosigned checkpoint: per log (origin), the largest
//! checkpoint a run verified with no finding. The next run must find a checkpoint at least
//! as large, whose tree is consistent with it; otherwise the log was rolled back.

use std::path::{Path, PathBuf};

use sentinel_domain::checkpoint::Origin;

/// Where the state of the log `origin` is kept under `dir`: one file of the signed note.
pub fn path(dir: &Path, origin: &Origin) -> PathBuf {
    let name: String = origin
        .as_str()
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c.to_string(),
            other => format!("%{:02X}", other as u32),
        })
        .collect();
    dir.join(format!("{name}.checkpoint"))
}

/// The note trusted on an earlier run, if any.
pub fn load(dir: &Path, origin: &Origin) -> anyhow::Result<Option<String>> {
    let path = path(dir, origin);
    match std::fs::read_to_string(&path) {
        Ok(note) => Ok(Some(note)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Keeps `note` as the trusted checkpoint (written whole, then renamed into place).
pub fn save(dir: &Path, origin: &Origin, note: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let path = path(dir, origin);
    let temporary = path.with_extension("checkpoint.tmp");
    std::fs::write(&temporary, note)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// The default directory: `$XDG_STATE_HOME/sentinel/verify`, or `~/.local/state/sentinel/verify`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("sentinel/verify"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state/sentinel/verify"))
}
