//! Which OSS operation a request performs.

/// The OSS (or S3) operation a request performs; carried in errors so that a person knows
/// which step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `PutObject`: the whole file in one request (files below the multipart threshold).
    PutObject,
    /// `InitiateMultipartUpload`.
    Initiate,
    /// `UploadPart`.
    UploadPart,
    /// `ListParts`.
    ListParts,
    /// `CompleteMultipartUpload`.
    Complete,
    /// `AbortMultipartUpload`.
    Abort,
    /// `HeadObject`.
    HeadObject,
    /// `ListMultipartUploads`.
    ListUploads,
}

impl Op {
    /// The operation's name as the OSS API documentation spells it.
    pub fn name(self) -> &'static str {
        match self {
            Op::PutObject => "PutObject",
            Op::Initiate => "InitiateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::ListParts => "ListParts",
            Op::Complete => "CompleteMultipartUpload",
            Op::Abort => "AbortMultipartUpload",
            Op::HeadObject => "HeadObject",
            Op::ListUploads => "ListMultipartUploads",
        }
    }
}

impl core::fmt::Display for Op {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
