// STUB (replaced by the helper's delivery)
use protocol::metrics::JvmStats;
#[derive(Debug, thiserror::Error)]
pub enum JvmError {
    #[error("stub")]
    Stub,
}
pub fn read_jvm(_pid: u32) -> Result<JvmStats, JvmError> {
    Err(JvmError::Stub)
}
pub fn is_java(_pid: u32) -> bool {
    false
}
