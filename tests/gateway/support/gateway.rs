//! A gateway started in this process on ephemeral ports, and waiting helpers.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use shardgate::cli::Driver;
use shardgate::compile::snapshot::{LoadOptions, Snapshot};
use shardgate::control::server::Server;

use super::*;

/// A gateway running in this process on ephemeral ports.
pub struct Gateway {
    server: Option<Server>,
    pub addr: SocketAddr,
    /// The HTTPS listener, when started with `start_tls`.
    pub https_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// One worker, the given API definition, defaults otherwise.
    pub fn start(api: &str) -> Gateway {
        Gateway::start_with(api, "", 1)
    }

    /// `gateway_yaml` is appended to a config that listens on 127.0.0.1:0 (HTTP only).
    pub fn start_with(api: &str, gateway_yaml: &str, workers: usize) -> Gateway {
        Gateway::start_config(
            api,
            "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: []\n",
            gateway_yaml,
            workers,
        )
    }

    /// Like `start_with`, with several API definitions (one file each).
    pub fn start_apis(apis: &[&str], gateway_yaml: &str, workers: usize) -> Gateway {
        Gateway::start_definitions(
            apis,
            "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: []\n",
            gateway_yaml,
            workers,
        )
    }

    /// HTTP and HTTPS on 127.0.0.1:0; `gateway_yaml` may add a `tls:` section.
    pub fn start_tls(api: &str, gateway_yaml: &str) -> Gateway {
        Gateway::start_config(
            api,
            "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: [\"127.0.0.1:0\"]\n",
            gateway_yaml,
            1,
        )
    }

    fn start_config(api: &str, listeners: &str, gateway_yaml: &str, workers: usize) -> Gateway {
        Gateway::start_definitions(&[api], listeners, gateway_yaml, workers)
    }

    fn start_definitions(
        apis: &[&str],
        listeners: &str,
        gateway_yaml: &str,
        workers: usize,
    ) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("apis")).unwrap();
        for (i, api) in apis.iter().enumerate() {
            let name = if i == 0 {
                "api.yaml".to_owned()
            } else {
                format!("api{i}.yaml")
            };
            std::fs::write(dir.path().join("apis").join(name), api).unwrap();
        }
        let config =
            format!("{listeners}admin: null\nworkers: {workers}\napis: [apis/]\n{gateway_yaml}");
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, config).unwrap();
        let snapshot = Snapshot::load(&LoadOptions {
            config: Some(config_path),
            apis: vec![],
            resolve_hosts: true,
        })
        .unwrap_or_else(|e| panic!("test configuration is invalid:\n{e}"));
        let server = Server::start(snapshot, Driver::Auto).expect("start gateway");
        let addr = server.http_addrs[0];
        let https_addr = server.https_addrs.first().copied();
        Gateway {
            server: Some(server),
            addr,
            https_addr,
            dir,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// As the gateway's reload does: reads the files again into a snapshot built from the
    /// serving one (same upstream table), and publishes it.
    pub fn reload(&self) {
        let (current, _) = self.server().shared().snapshot();
        let next = Snapshot::load_next(&self.load_options(), &current)
            .unwrap_or_else(|e| panic!("reloaded configuration is invalid:\n{e}"));
        self.server().publish(next).expect("publish the reload");
    }

    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            config: Some(self.config_path()),
            apis: vec![],
            resolve_hosts: true,
        }
    }

    /// One counter summed over the shards, e.g. `gateway.shard_sum(|m| m.panics.get())`.
    pub fn shard_sum(&self, counter: impl Fn(&shardgate::metrics::ShardMetrics) -> u64) -> u64 {
        let metrics = self.server().shared().metrics.shard_metrics();
        metrics.iter().map(|m| counter(m)).sum()
    }

    /// Begins the drain and waits for the shards to exit.
    pub fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

/// An open (security-disabled) API at `/svc` over `urls` with `type`.
pub fn open_api(urls: &[String], kind: &str) -> String {
    let urls = urls
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "openapi: 3.0.1\ninfo: {{title: svc, version: '1'}}\nx-wso2-basePath: /svc\nx-wso2-disable-security: true\nx-wso2-production-endpoints:\n  urls: [{urls}]\n  type: {kind}\npaths:\n  /*:\n    get: {{}}\n    post: {{}}\n    put: {{}}\n    delete: {{}}\n    head: {{}}\n    patch: {{}}\n"
    )
}

/// Polls `condition` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    condition()
}
