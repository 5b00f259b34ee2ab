//! `--watch`: reload when the configuration files change. A thread polls a fingerprint of
//! the gateway file and every definition file (path, size, modification time) once a second.
//! Metadata follows symlinks and the resolved path is part of the fingerprint, so the atomic
//! `..data` symlink swap Kubernetes does when a ConfigMap changes is seen like any edit.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

/// A fingerprint of everything under `roots` (files, directories walked recursively).
pub fn fingerprint(roots: &[PathBuf]) -> u64 {
    let mut entries = Vec::new();
    for root in roots {
        collect(root, 0, &mut entries);
    }
    entries.sort();
    let mut hasher = DefaultHasher::new();
    entries.hash(&mut hasher);
    hasher.finish()
}

/// (path as named, path with symlinks resolved, size, modification time).
type Entry = (PathBuf, PathBuf, u64, u128);

fn collect(path: &Path, depth: usize, out: &mut Vec<Entry>) {
    let Ok(meta) = std::fs::metadata(path) else {
        out.push((path.to_owned(), PathBuf::new(), u64::MAX, 0));
        return;
    };
    if meta.is_dir() {
        if depth > 16 {
            return;
        }
        if let Ok(children) = std::fs::read_dir(path) {
            for child in children.flatten() {
                collect(&child.path(), depth + 1, out);
            }
        }
        return;
    }
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    // The resolved path changes when a symlink is swapped to a new version, even when the
    // new file has the same size and modification time.
    let resolved = std::fs::canonicalize(path).unwrap_or_default();
    out.push((path.to_owned(), resolved, meta.len(), modified));
}

/// A running watcher; stops when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Calls `on_change` whenever the fingerprint of `roots()` changes (checked every
    /// `interval`). `roots` is asked again after each change, since a reload may name new files.
    pub fn spawn(
        interval: Duration,
        roots: impl Fn() -> Vec<PathBuf> + Send + 'static,
        on_change: impl Fn() + Send + 'static,
    ) -> std::io::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        // The baseline is taken before returning, so a change made right after start-up is
        // a change, not part of the baseline.
        let mut last = fingerprint(&roots());
        let thread = std::thread::Builder::new()
            .name("config-watch".into())
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    std::thread::sleep(interval);
                    let now = fingerprint(&roots());
                    if now != last {
                        // Let a writer finish its burst of writes before reading.
                        std::thread::sleep(interval / 4);
                        last = fingerprint(&roots());
                        on_change();
                    }
                }
            })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_content_and_new_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "one").unwrap();
        let roots = vec![dir.path().to_owned()];
        let first = fingerprint(&roots);
        assert_eq!(fingerprint(&roots), first, "stable when nothing changes");
        std::fs::write(&file, "two!").unwrap();
        let second = fingerprint(&roots);
        assert_ne!(second, first, "size/mtime change is seen");
        std::fs::write(dir.path().join("b.yaml"), "x").unwrap();
        assert_ne!(fingerprint(&roots), second, "a new file is seen");
    }

    #[test]
    fn symlink_swaps_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("v1");
        let v2 = dir.path().join("v2");
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v1.join("gateway.yaml"), "workers: 1\n").unwrap();
        std::fs::write(v2.join("gateway.yaml"), "workers: 2\n").unwrap();
        let link = dir.path().join("data");
        std::os::unix::fs::symlink(&v1, &link).unwrap();
        let roots = vec![link.join("gateway.yaml")];
        let before = fingerprint(&roots);
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&v2, &link).unwrap();
        assert_ne!(fingerprint(&roots), before);
    }
}
