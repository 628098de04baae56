//! The browser shell's controller side: interactive PTY sessions over SSH
//! (`terminal`), the session that ties a terminal to a browser with idle
//! timeout, flow control and recording (`session`), asciicast recordings
//! (`recording`), and SFTP transfers (`transfer`). Knows no HTTP: the web
//! layer adapts websockets and request bodies to these types.

pub mod recording;
pub mod session;
pub mod terminal;
pub mod transfer;

use serde::{Deserialize, Serialize};

/// `[shell]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShellSettings {
    /// A session with nothing typed and nothing shown this long is closed.
    pub idle_secs: u64,
    /// Also record what is typed. Off by default: it captures passwords
    /// typed at prompts (sudo, su, mysql -p).
    pub record_input: bool,
    /// Upload and download through the browser; off removes both.
    pub transfers: bool,
    /// Bound on TCP connect + SSH handshake + login.
    pub connect_timeout_secs: u64,
}

impl Default for ShellSettings {
    fn default() -> Self {
        ShellSettings {
            idle_secs: 600,
            record_input: false,
            transfers: true,
            connect_timeout_secs: 15,
        }
    }
}
