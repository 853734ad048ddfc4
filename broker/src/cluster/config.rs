//! The `[cluster]` section: the NATS server that carries between nodes, this node's name, and
//! how long a silent node is still taken to be alive.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Several nodes (`[cluster]`); unset `nats`: this process is the only broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// The NATS server every node connects to, e.g. `nats://10.0.0.5:4222` (`ROOST_CLUSTER__NATS`).
    pub nats: Option<String>,
    /// This node's name, unique in the cluster, `[a-z0-9_.-]{1,64}` (`ROOST_CLUSTER__NODE`);
    /// unset: the host name.
    pub node: Option<String>,
    /// Seconds a node may stay silent before the others take it for dead and its users go
    /// offline; a node cut off from NATS for half of it closes its connections
    /// (`ROOST_CLUSTER__NODE_TTL`).
    pub node_ttl: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { nats: None, node: None, node_ttl: 6 }
    }
}

impl ClusterConfig {
    /// This node's name: configured, or the host name made fit for one.
    pub fn node_name(&self) -> String {
        if let Some(node) = &self.node {
            return node.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let name: String = host
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .take(64)
            .collect();
        if name.is_empty() {
            "node".to_owned()
        } else {
            name
        }
    }

    pub fn node_ttl(&self) -> Duration {
        Duration::from_secs(self.node_ttl)
    }
}
