//! AWS Signature Version 4 for S3: presigned POST policies and presigned URLs (stub).
