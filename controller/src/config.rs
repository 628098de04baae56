//! The controller's settings: one TOML file, then environment overrides.
//!
//! `MYPLATFORM_<SECTION>__<KEY>=value` overrides `[section] key`, and
//! `MYPLATFORM_<KEY>` a top-level key (values parse as TOML where they can,
//! else as strings; a value whose setting is text stays the exact text, so
//! a password of digits is not read as a number). `MYPLATFORM_CONFIG`
//! names the file. This is the only
//! place that reads configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const ENV_PREFIX: &str = "MYPLATFORM_";
pub const ENV_CONFIG: &str = "MYPLATFORM_CONFIG";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Inventory, CA, and (later) metrics and files live here.
    pub data_dir: PathBuf,
    pub gateway: GatewaySettings,
    pub web: WebSettings,
    pub metrics: MetricsSettings,
    pub alerts: crate::alerts::AlertSettings,
    pub shell: crate::shell::ShellSettings,
    pub deploy: crate::deploy::DeploySettings,
    pub loadtest: crate::loadtest::LoadTestSettings,
    /// Where recordings, uploaded JMeter zips and task artifacts are kept.
    pub files: crate::files::FileSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// How long each resolution is kept (days), embedded store.
    pub retention: crate::metrics::Retention,
    /// Store metrics in this InfluxDB (1.x, or the v1 API of 2.x/3.x)
    /// instead of the embedded store.
    pub influxdb: Option<crate::metrics::influx::InfluxSettings>,
    /// How often received samples are made durable (and then acknowledged
    /// to agents, which keep them until then).
    pub flush_secs: u32,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            retention: crate::metrics::Retention::default(),
            influxdb: None,
            flush_secs: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// UDP address of the QUIC endpoint agents connect to.
    pub listen: SocketAddr,
    /// `host:port` agents should dial, printed in install lines. Defaults
    /// to the listen address (with this host's name if it listens on all).
    pub advertise: Option<String>,
    /// How often agents send heartbeats.
    pub heartbeat_secs: u32,
    /// Validity of agent certificates.
    pub agent_cert_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// TCP address of the web UI and the JSON API.
    pub listen: SocketAddr,
    /// Serve under this path (e.g. `/ops`) behind a reverse proxy that
    /// forwards `/ops/...` unchanged. Empty: at the root.
    pub prefix: String,
    /// Serve HTTPS with this certificate chain and key (PEM files) instead
    /// of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Mark the session cookie `Secure` although this process serves plain
    /// HTTP (a TLS-terminating proxy is in front). Always on with `tls`.
    pub secure_cookies: bool,
    /// A session unused this many minutes ends.
    pub session_idle_minutes: u32,
    /// No session lives longer than this many hours.
    pub session_max_hours: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("/var/lib/myplatform"),
            gateway: GatewaySettings::default(),
            web: WebSettings::default(),
            metrics: MetricsSettings::default(),
            alerts: crate::alerts::AlertSettings::default(),
            shell: crate::shell::ShellSettings::default(),
            deploy: crate::deploy::DeploySettings::default(),
            loadtest: crate::loadtest::LoadTestSettings::default(),
            files: crate::files::FileSettings::default(),
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: ([0, 0, 0, 0], 7443).into(),
            advertise: None,
            heartbeat_secs: 5,
            agent_cert_days: 397,
        }
    }
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            listen: ([127, 0, 0, 1], 8080).into(),
            prefix: String::new(),
            tls: None,
            secure_cookies: false,
            session_idle_minutes: 8 * 60,
            session_max_hours: 7 * 24,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Sets `path` in `table`, creating sections; `Err(part)` when a part of
/// the path is a value, not a section.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let mut node = table;
    for part in &path[..path.len() - 1] {
        let entry = node
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| part.clone())?;
    }
    node.insert(path[path.len() - 1].clone(), value);
    Ok(())
}

impl Settings {
    /// Loads `file` (or `$MYPLATFORM_CONFIG`, or nothing) and applies the
    /// process environment on top.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(ENV_CONFIG).map(PathBuf::from));
        let text = match &file {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?,
            None => String::new(),
        };
        let origin = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "configuration".into());
        Self::from_parts(&text, &origin, &env)
    }

    /// Pure core of [`Settings::load`].
    pub fn from_parts(
        toml_text: &str,
        origin: &str,
        env: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let mut table: toml::Table = toml_text
            .parse()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        // Overrides read as TOML (a number, a boolean...): if the setting
        // turns out to be text, the raw value is put back as text.
        let mut typed: Vec<(String, Vec<String>, String)> = Vec::new();
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if key == ENV_CONFIG || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.clone()));
            if !parsed.is_str() {
                typed.push((key.clone(), path.clone(), value.clone()));
            }
            set_path(&mut table, &path, parsed)
                .map_err(|part| invalid(format!("{key}: {part} is not a section")))?;
        }
        let settings = loop {
            match serde_path_to_error::deserialize::<_, Settings>(toml::Value::Table(table.clone()))
            {
                Ok(s) => break s,
                Err(e) => {
                    let at = e.path().to_string();
                    let Some(i) = typed.iter().position(|(_, p, _)| p.join(".") == at) else {
                        let inner = e.into_inner().to_string();
                        let inner = inner.trim_end();
                        return Err(invalid(
                            if at.is_empty() || at == "." || inner.contains(&format!("`{at}`")) {
                                inner.to_string()
                            } else {
                                format!("{inner}\nin `{at}`")
                            },
                        ));
                    };
                    let (key, path, raw) = typed.remove(i);
                    set_path(&mut table, &path, toml::Value::String(raw))
                        .map_err(|part| invalid(format!("{key}: {part} is not a section")))?;
                }
            }
        };
        settings.validate().map_err(invalid)?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        if self.gateway.heartbeat_secs == 0 || self.gateway.heartbeat_secs > 300 {
            return Err("gateway.heartbeat_secs must be between 1 and 300".into());
        }
        if self.metrics.flush_secs == 0 || self.metrics.flush_secs > 300 {
            return Err("metrics.flush_secs must be between 1 and 300".into());
        }
        let r = &self.metrics.retention;
        if r.raw_days == 0 || r.minute_days < r.raw_days || r.hour_days < r.minute_days {
            return Err("metrics.retention: need 1 <= raw_days <= minute_days <= hour_days".into());
        }
        let p = &self.web.prefix;
        if !p.is_empty()
            && (!p.starts_with('/')
                || p.ends_with('/')
                || p.contains("//")
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.')))
        {
            return Err(format!(
                "web.prefix {p:?} must look like /name or /a/b (no trailing slash)"
            ));
        }
        if self.web.session_idle_minutes == 0 || self.web.session_max_hours == 0 {
            return Err(
                "web.session_idle_minutes and web.session_max_hours must be at least 1".into(),
            );
        }
        if self.shell.idle_secs == 0 || self.shell.connect_timeout_secs == 0 {
            return Err("shell.idle_secs and shell.connect_timeout_secs must be at least 1".into());
        }
        if !self.deploy.root.starts_with('/')
            || self.deploy.root.contains(['\0', '\n', '\r'])
            || self.deploy.root.split('/').any(|c| c == "..")
        {
            return Err(format!(
                "deploy.root {:?} must be an absolute path without ..",
                self.deploy.root
            ));
        }
        if self.gateway.agent_cert_days == 0 {
            return Err("gateway.agent_cert_days must be at least 1".into());
        }
        if let crate::files::FileSettings::S3(s3) = &self.files {
            s3.validate()?;
        }
        Ok(())
    }

    /// The address agents are told to dial, given where the gateway
    /// actually listens (port 0 in the configuration means "any").
    pub fn advertised_gateway_for(&self, bound: SocketAddr) -> String {
        if self.gateway.advertise.is_some() || self.gateway.listen.port() != 0 {
            return self.advertised_gateway();
        }
        let mut s = self.clone();
        s.gateway.listen = bound;
        s.advertised_gateway()
    }

    /// The address printed in install lines.
    pub fn advertised_gateway(&self) -> String {
        if let Some(a) = &self.gateway.advertise {
            return a.clone();
        }
        let l = self.gateway.listen;
        if l.ip().is_unspecified() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("{host}:{}", l.port())
        } else {
            l.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_file_and_env_layer_in_order() {
        let s = Settings::from_parts("", "t", &[]).unwrap();
        assert_eq!(s, Settings::default());
        let file = "data_dir = \"/srv/mp\"\n[gateway]\nheartbeat_secs = 2\n";
        let s = Settings::from_parts(
            file,
            "t",
            &env(&[
                ("MYPLATFORM_GATEWAY__HEARTBEAT_SECS", "3"),
                ("MYPLATFORM_WEB__LISTEN", "0.0.0.0:9000"),
                ("MYPLATFORM_CONFIG", "/ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/mp"));
        assert_eq!(s.gateway.heartbeat_secs, 3);
        assert_eq!(s.web.listen, "0.0.0.0:9000".parse().unwrap());
    }

    #[test]
    fn mistakes_are_reported_with_their_origin() {
        let e =
            Settings::from_parts("[gateway]\nlisten = \"nope\"", "/etc/mp.toml", &[]).unwrap_err();
        assert!(e.to_string().starts_with("/etc/mp.toml:"), "{e}");
        let e = Settings::from_parts("colour = 1", "f", &[]).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Settings::from_parts(
            "",
            "f",
            &env(&[("MYPLATFORM_GATEWAY__HEARTBEAT_SECS", "0")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("heartbeat_secs"), "{e}");
        for bad in ["ops", "/ops/", "/a//b", "/a b"] {
            let e =
                Settings::from_parts(&format!("[web]\nprefix = {bad:?}"), "f", &[]).unwrap_err();
            assert!(e.to_string().contains("web.prefix"), "{e}");
        }
        let e =
            Settings::from_parts("", "f", &env(&[("MYPLATFORM_DATA_DIR__X", "1")])).unwrap_err();
        assert!(e.to_string().contains("data_dir"), "{e}");
    }

    #[test]
    fn text_settings_from_the_environment_keep_their_exact_text() {
        let file = "[metrics.influxdb]\nurl = \"http://influx.example.com:8086\"\ndatabase = \"mp\"\n\n[alerts.smtp]\nhost = \"127.0.0.1\"\nport = 25\nsecurity = \"none\"\nusername = \"ops\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n";
        let s = Settings::from_parts(
            file,
            "f",
            &env(&[
                // Digits, a float-looking and a boolean-looking secret.
                ("MYPLATFORM_METRICS__INFLUXDB__PASSWORD", "0123456"),
                ("MYPLATFORM_ALERTS__SMTP__PASSWORD", "1e5"),
                ("MYPLATFORM_METRICS__INFLUXDB__USERNAME", "true"),
                // A number where a number belongs stays a number.
                ("MYPLATFORM_GATEWAY__HEARTBEAT_SECS", "7"),
            ]),
        )
        .unwrap();
        let influx = s.metrics.influxdb.as_ref().unwrap();
        assert_eq!(influx.password.as_deref(), Some("0123456"));
        assert_eq!(influx.username.as_deref(), Some("true"));
        assert_eq!(
            s.alerts.smtp.as_ref().unwrap().password.as_deref(),
            Some("1e5")
        );
        assert_eq!(s.gateway.heartbeat_secs, 7);
        // Text where a number belongs is still refused, by its name.
        let e = Settings::from_parts(
            "",
            "f",
            &env(&[("MYPLATFORM_GATEWAY__HEARTBEAT_SECS", "often")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("gateway.heartbeat_secs"), "{e}");
    }

    #[test]
    fn files_go_to_s3_with_the_secret_from_the_environment_and_never_printed() {
        use crate::files::FileSettings;
        let s = Settings::from_parts("", "t", &[]).unwrap();
        assert_eq!(s.files, FileSettings::Local {});
        let file = r#"
[files]
backend = "s3"
endpoint = "http://127.0.0.1:9000"
allow_http = true
bucket = "myplatform"
prefix = "prod/ctl-1"
access_key_id = "AKIAEXAMPLE"
"#;
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let s = Settings::from_parts(
            file,
            "t",
            &env(&[("MYPLATFORM_FILES__SECRET_ACCESS_KEY", secret)]),
        )
        .unwrap();
        let FileSettings::S3(s3) = &s.files else {
            panic!("{:?}", s.files)
        };
        assert_eq!(s3.secret_access_key, secret);
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.prefix, "prod/ctl-1");
        assert!(s3.allow_http);
        for printed in [format!("{s:?}"), format!("{s:#?}"), format!("{s3:?}")] {
            assert!(!printed.contains(secret), "{printed}");
            assert!(printed.contains("<redacted>"), "{printed}");
        }
        // The whole section from the environment.
        let s = Settings::from_parts(
            "",
            "t",
            &env(&[
                ("MYPLATFORM_FILES__BACKEND", "s3"),
                ("MYPLATFORM_FILES__BUCKET", "b"),
                ("MYPLATFORM_FILES__ENDPOINT", "https://minio.example.com"),
                ("MYPLATFORM_FILES__ACCESS_KEY_ID", "k"),
                ("MYPLATFORM_FILES__SECRET_ACCESS_KEY", "s"),
            ]),
        )
        .unwrap();
        assert!(matches!(s.files, FileSettings::S3(ref s3) if s3.bucket == "b"));
    }

    #[test]
    fn files_mistakes_are_named() {
        let s3 = |extra: &str| {
            format!(
                "[files]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id = \"k\"\n\
                 secret_access_key = \"s\"\n{extra}"
            )
        };
        let err = |toml: &str| {
            Settings::from_parts(toml, "f", &[])
                .unwrap_err()
                .to_string()
        };
        Settings::from_parts(&s3(""), "f", &[]).unwrap();
        let e = err("[files]\nbackend = \"ftp\"");
        assert!(
            e.contains("ftp") && e.contains("local") && e.contains("s3"),
            "{e}"
        );
        let e = err("[files]\nbackend = \"local\"\nbucket = \"b\"");
        assert!(e.contains("bucket"), "{e}");
        let e = err(&s3("colour = 1"));
        assert!(e.contains("colour"), "{e}");
        let e = err("[files]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id = \"k\"");
        assert!(e.contains("secret_access_key"), "{e}");
        let e = err(&s3("endpoint = \"http://10.0.0.5:9000\""));
        assert!(e.contains("files.allow_http = true"), "{e}");
        let e = err(&s3("endpoint = \"minio:9000\""));
        assert!(e.contains("files.endpoint"), "{e}");
        for bad in ["/p", "p/", "a//b", "a/../b"] {
            let e = err(&s3(&format!("prefix = {bad:?}")));
            assert!(e.contains("files.prefix"), "{bad}: {e}");
        }
        let e = err(&s3("").replace("\"k\"", "\"\""));
        assert!(e.contains("files.access_key_id"), "{e}");
    }
}
