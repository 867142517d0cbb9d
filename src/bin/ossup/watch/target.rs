//! The watch destination `oss://BUCKET/PREFIX` and the key of each spool file.
//!
//! Owns: parsing the destination and turning a relative path into a [`Destination`].
//! Must not: touch the file system.

use ossup::Destination;

/// Bucket and key prefix of `oss://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) bucket: String,
    pub(super) prefix: String,
}

impl Target {
    pub(super) fn parse(dest: &str) -> Result<Target, String> {
        let Some(rest) = dest
            .strip_prefix("oss://")
            .or_else(|| dest.strip_prefix("s3://"))
        else {
            return Err(format!(
                "destination {dest:?} must look like oss://BUCKET/PREFIX/"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // The bucket rules are those of any destination; check them with a stand-in key.
        Destination {
            bucket: bucket.to_string(),
            key: "k".into(),
        }
        .validate()
        .map_err(|e| e.0)?;
        if prefix.starts_with('/')
            || prefix.starts_with('\\')
            || prefix.chars().any(char::is_control)
        {
            return Err(format!(
                "prefix {prefix:?}: must not start with '/' or contain control characters"
            ));
        }
        // `oss://b/in` and `oss://b/in/` are the same destination: prefix `in/` (a file
        // `cam.log` becomes `in/cam.log`, never `incam.log`).
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        Ok(Target {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// The destination of the file at `rel`.
    pub(super) fn dest(&self, rel: &str) -> Result<Destination, String> {
        let d = Destination {
            bucket: self.bucket.clone(),
            key: format!("{}{rel}", self.prefix),
        };
        d.validate().map_err(|e| e.0)?;
        Ok(d)
    }
}
