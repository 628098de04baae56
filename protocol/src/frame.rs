//! Length-prefixed bincode frames: a 4-byte big-endian length, then the
//! payload. Every read states its size cap; a frame over the cap, a payload
//! that does not decode, or trailing bytes are errors, never panics.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Cap for control-stream frames (commands, acks, heartbeats).
pub const MAX_CONTROL_FRAME: usize = 64 * 1024;
/// Cap for bulk-stream frames (metric batches, result chunks, files).
pub const MAX_BULK_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds the {max}-byte cap")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("cannot encode message: {0}")]
    Encode(String),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The payload of a frame (no length prefix).
pub fn encode_payload<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| FrameError::Encode(e.to_string()))
}

/// A whole frame: length prefix and payload.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let payload = encode_payload(msg)?;
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes a payload; it must be exactly one message.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    // The payload length is already capped; bincode's own limit stops a
    // length field inside it from asking for a huge allocation.
    let cfg = config().with_limit::<{ MAX_BULK_FRAME }>();
    let (msg, used) = bincode::serde::decode_from_slice(payload, cfg)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            payload.len() - used
        )));
    }
    Ok(msg)
}

pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    w.write_all(&encode(msg)?).await?;
    Ok(())
}

/// Reads one raw payload; `Ok(None)` on a clean end of stream between frames.
pub async fn read_raw_frame<R>(r: &mut R, max: usize) -> Result<Option<Vec<u8>>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(Some(payload))
}

pub async fn read_frame<R, T>(r: &mut R, max: usize) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    match read_raw_frame(r, max).await? {
        Some(p) => decode(&p).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentMsg, ControllerMsg};

    #[tokio::test]
    async fn frames_round_trip_over_a_stream() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let msgs = vec![
            AgentMsg::Heartbeat { seq: 1 },
            AgentMsg::Enroll {
                token: "t".repeat(3000),
                csr_pem: "c".into(),
            },
        ];
        let sent = msgs.clone();
        let writer = tokio::spawn(async move {
            for m in &sent {
                write_frame(&mut a, m).await.unwrap();
            }
        });
        for m in &msgs {
            let got: AgentMsg = read_frame(&mut b, MAX_CONTROL_FRAME)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&got, m);
        }
        writer.await.unwrap();
        assert!(
            read_frame::<_, AgentMsg>(&mut b, MAX_CONTROL_FRAME)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_reading_them() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = read_frame::<_, AgentMsg>(&mut input, MAX_CONTROL_FRAME)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: 0xffff_ffff,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn garbage_truncation_and_trailing_bytes_are_errors() {
        let mut garbage: &[u8] = &[0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef];
        assert!(matches!(
            read_frame::<_, ControllerMsg>(&mut garbage, MAX_CONTROL_FRAME).await,
            Err(FrameError::Malformed(_))
        ));
        let mut short: &[u8] = &[0, 0, 0, 9, 1];
        assert!(matches!(
            read_frame::<_, AgentMsg>(&mut short, MAX_CONTROL_FRAME).await,
            Err(FrameError::Truncated)
        ));
        let mut half_len: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame::<_, AgentMsg>(&mut half_len, MAX_CONTROL_FRAME).await,
            Err(FrameError::Truncated)
        ));
        let mut payload = encode_payload(&AgentMsg::Heartbeat { seq: 7 }).unwrap();
        payload.push(0);
        assert!(matches!(
            decode::<AgentMsg>(&payload),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn a_length_inside_the_payload_cannot_force_a_huge_allocation() {
        // Variant 1 (Enroll), then a string length of 2^62.
        let payload = [1u8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x40];
        assert!(matches!(
            decode::<AgentMsg>(&payload),
            Err(FrameError::Malformed(_))
        ));
    }
}
