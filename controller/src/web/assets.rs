//! Templates and static files, embedded in the binary at build time from
//! `controller/web/` (the vendored npm assets included, see
//! `web/package.json` and `scripts/web-assets`), so a controller is one
//! file to install.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use rust_embed::RustEmbed;
use serde::Serialize;

#[derive(RustEmbed)]
#[folder = "web/templates/"]
struct TemplateFiles;

#[derive(RustEmbed)]
#[folder = "web/static/"]
struct StaticFiles;

/// The compiled page templates. HTML auto-escaping is on for every
/// `.html` template, so names typed by people can never become markup.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn load(prefix: &str) -> anyhow::Result<Templates> {
        let mut env = Environment::new();
        for name in TemplateFiles::iter() {
            let file = TemplateFiles::get(&name).expect("listed template exists");
            let text = String::from_utf8(file.data.into_owned())
                .map_err(|_| anyhow::anyhow!("template {name} is not UTF-8"))?;
            env.add_template_owned(name.to_string(), text)
                .map_err(|e| anyhow::anyhow!("template {name}: {e}"))?;
        }
        // Safe as is: the configuration admits only [A-Za-z0-9/._-] here.
        env.add_global(
            "prefix",
            minijinja::Value::from_safe_string(prefix.to_string()),
        );
        env.add_global("version", env!("CARGO_PKG_VERSION"));
        env.add_filter("bytes", human_bytes);
        env.add_filter("ago", |secs: u64| crate::web::pages::ago(secs));
        Ok(Templates { env })
    }

    pub fn render<S: Serialize>(&self, name: &str, ctx: S) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(minijinja::Value::from(minijinja::value::Serde(ctx)))
    }
}

/// `1073741824` -> `1.0 GiB` (binary prefixes: what `free -h` and `df -h`
/// show).
pub fn human_bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = v.max(0.0);
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

pub async fn static_file(Path(path): Path<String>) -> Response {
    let Some(file) = StaticFiles::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mime = file.metadata.mimetype();
    let mut r = file.data.into_owned().into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_prefixes() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(8.0 * 1024.0 * 1024.0 * 1024.0), "8.0 GiB");
    }

    /// The vendored npm files are exactly what `scripts/web-assets` copied
    /// from the versions `web/package-lock.json` pins: nobody edited them
    /// by hand, and a version bump without re-vendoring fails here.
    #[test]
    fn vendored_assets_match_their_manifest_and_the_lock() {
        let manifest = StaticFiles::get("vendor/MANIFEST").expect("vendor/MANIFEST");
        let manifest = String::from_utf8(manifest.data.into_owned()).unwrap();
        let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/package-lock.json");
        let lock: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(lock_path).unwrap()).unwrap();
        let mut files = 0;
        for line in manifest
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [file, pkg, sha] = cols[..] else {
                panic!("bad MANIFEST line {line:?}");
            };
            let data = StaticFiles::get(&format!("vendor/{file}"))
                .unwrap_or_else(|| panic!("vendor/{file} listed but missing"));
            let got = hex::encode(ring::digest::digest(&ring::digest::SHA256, &data.data));
            assert_eq!(got, sha, "vendor/{file} differs from what was vendored");
            let (name, version) = pkg.rsplit_once('@').unwrap();
            let locked = &lock["packages"][format!("node_modules/{name}")]["version"];
            assert_eq!(
                locked, version,
                "{file}: the lock pins {name}@{locked}; run scripts/web-assets"
            );
            files += 1;
        }
        assert!(files >= 5, "MANIFEST lists {files} files");
    }

    #[test]
    fn every_template_compiles() {
        let t = Templates::load("/p").unwrap();
        assert!(TemplateFiles::iter().count() >= 5);
        for name in TemplateFiles::iter() {
            assert!(t.env.get_template(&name).is_ok(), "{name}");
        }
    }
}
