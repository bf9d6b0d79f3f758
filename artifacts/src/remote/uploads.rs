//! Unfinished uploads a remote gc cleans: S3 multipart uploads that were started and never
//! completed or aborted (a push killed midway), found with ListMultipartUploads (which
//! `object_store` does not offer: the request is signed with its SigV4 signer and sent with its
//! HTTP client) and aborted; on a `file://` remote, the staging files (`<object>#<n>`) that
//! `object_store` writes before linking an object into place.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::ClientOptions;
use serde::Deserialize;

use super::{Location, Remote, RemoteError};

/// Where a remote's unfinished uploads are found.
pub(crate) enum Uploads {
    /// An S3 bucket (its client, for signing and aborting).
    S3 { s3: AmazonS3, bucket: String },
    /// The directory of a `file://` remote.
    Dir(PathBuf),
    /// A store given as is ([`Remote::from_store`]): none are looked for.
    Unknown,
}

impl Uploads {
    /// How to find the unfinished uploads of the remote at `url`.
    pub(crate) fn at(url: &str) -> Uploads {
        match Location::parse(url) {
            Ok(Location::S3 { bucket, .. }) => match super::s3(&bucket) {
                Ok(s3) => Uploads::S3 { s3, bucket },
                Err(_) => Uploads::Unknown,
            },
            Ok(Location::File { dir }) => Uploads::Dir(dir),
            Err(_) => Uploads::Unknown,
        }
    }
}

/// One unfinished upload.
pub(crate) struct Upload {
    /// The object it was writing, under the remote's prefix (S3), or the staging file.
    pub(crate) key: String,
    /// The S3 upload id (empty for a staging file).
    id: String,
    /// When it started (S3) or was last written (staging file).
    pub(crate) started: SystemTime,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResult {
    #[serde(default)]
    upload: Vec<ListedUpload>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
    initiated: String,
}

impl Remote {
    /// The unfinished uploads under the remote's prefix.
    pub(crate) async fn unfinished_uploads(&self) -> Result<Vec<Upload>, RemoteError> {
        match &self.uploads {
            Uploads::S3 { s3, bucket } => self.list_s3(s3, bucket).await,
            Uploads::Dir(dir) => Ok(staging_files(&dir.join(&self.prefix))),
            Uploads::Unknown => Ok(Vec::new()),
        }
    }

    /// Aborts an upload (S3) or removes a staging file.
    pub(crate) async fn abort_upload(&self, upload: &Upload) -> Result<(), RemoteError> {
        match &self.uploads {
            Uploads::S3 { s3, .. } => s3
                .abort_multipart(&ObjectPath::from(upload.key.as_str()), &upload.id)
                .await
                .map_err(|e| self.fail(&e)),
            Uploads::Dir(_) => match std::fs::remove_file(&upload.key) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.unusable(format!("cannot remove {}: {e}", upload.key))),
            },
            Uploads::Unknown => Ok(()),
        }
    }

    async fn list_s3(&self, s3: &AmazonS3, bucket: &str) -> Result<Vec<Upload>, RemoteError> {
        let config = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let value = |k: AmazonS3ConfigKey| config.get_config_value(&k);
        let region = value(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted = value(AmazonS3ConfigKey::VirtualHostedStyleRequest)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let base = match value(AmazonS3ConfigKey::Endpoint) {
            Some(e) if virtual_hosted => e.trim_end_matches('/').to_string(),
            Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        let credential = s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| self.fail(&e))?;
        let client: HttpClient = ReqwestConnector::default()
            .connect(&ClientOptions::default().with_allow_http(true))
            .map_err(|e| self.fail(&e))?;
        let mut out = Vec::new();
        let mut markers = (String::new(), String::new());
        loop {
            let mut url = format!("{base}/?uploads&prefix={}", encode(&self.prefix));
            if !markers.0.is_empty() {
                url.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    encode(&markers.0),
                    encode(&markers.1)
                ));
            }
            let mut request = http::Request::get(url.as_str())
                .body(HttpRequestBody::empty())
                .map_err(|e| self.unusable(format!("cannot build a request: {e}")))?;
            AwsAuthorizer::new(&credential, "s3", &region)
                .try_authorize(&mut request, None)
                .map_err(|e| self.fail(&e))?;
            let response = client
                .execute(request)
                .await
                .map_err(|e| self.unusable(format!("listing unfinished uploads: {e}")))?;
            let status = response.status();
            let body = response
                .into_body()
                .bytes()
                .await
                .map_err(|e| self.unusable(format!("listing unfinished uploads: {e}")))?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                return Err(self.unusable(format!(
                    "listing unfinished uploads: HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                )));
            }
            let listed: ListResult = quick_xml::de::from_reader(body.as_ref())
                .map_err(|e| self.unusable(format!("listing unfinished uploads: {e}")))?;
            for u in listed.upload {
                let started = humantime::parse_rfc3339_weak(&u.initiated)
                    .map_err(|e| self.unusable(format!("upload of {}: {e}", u.key)))?;
                out.push(Upload {
                    key: u.key,
                    id: u.upload_id,
                    started,
                });
            }
            match (
                listed.is_truncated,
                listed.next_key_marker,
                listed.next_upload_id_marker,
            ) {
                (true, Some(k), Some(u)) => markers = (k, u),
                _ => return Ok(out),
            }
        }
    }
}

/// Files named `<object>#<digits>` under `dir`: what `object_store`'s local store stages an
/// object in before linking it into place.
fn staging_files(dir: &Path) -> Vec<Upload> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name();
            let staged = name
                .to_str()
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if staged {
                out.push(Upload {
                    key: path.display().to_string(),
                    id: String::new(),
                    started: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    out
}

/// Percent-encodes a query value (unreserved characters kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
