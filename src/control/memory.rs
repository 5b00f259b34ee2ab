//! The memory releaser: a control-plane thread that returns free heap pages to the system
//! when a shard asks, after a connection storm (`data::memory` says when and why).

use crate::data::memory::ReleaseHandle;

/// A thread that returns free heap pages to the system when a shard asks (after a storm).
pub struct MemoryReleaser {
    requests: crossbeam::channel::Sender<String>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemoryReleaser {
    pub fn start() -> std::io::Result<MemoryReleaser> {
        // One pending request is enough: a trim serves every shard that asked meanwhile.
        let (requests, pending) = crossbeam::channel::bounded::<String>(1);
        let thread = std::thread::Builder::new()
            .name("memory".into())
            .spawn(move || {
                for reason in pending {
                    let started = std::time::Instant::now();
                    crate::data::memory::release_free_memory();
                    log::info!(
                        "{reason}: free heap memory given back in {} us",
                        started.elapsed().as_micros()
                    );
                }
            })?;
        Ok(MemoryReleaser {
            requests,
            thread: Some(thread),
        })
    }

    /// A handle for shards: asks for a release without ever blocking.
    pub fn handle(&self) -> ReleaseHandle {
        ReleaseHandle::new(self.requests.clone())
    }
}

impl Drop for MemoryReleaser {
    fn drop(&mut self) {
        // Replacing the sender closes the channel once the shards' handles are gone too.
        let (closed, _) = crossbeam::channel::bounded(1);
        self.requests = closed;
        if let Some(thread) = self.thread.take() {
            // The shards are gone by now (the server waits for them first).
            let _ = thread.join();
        }
    }
}
