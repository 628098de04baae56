//! Enrollment: a join token and a CSR in, a client certificate out.
//!
//! The token is checked before any signing work, and one use is taken
//! atomically only once a certificate has been made, so a bad CSR does not
//! burn a single-use token.

use std::sync::Arc;

use certs::{AgentId, JoinToken};
use protocol::frame::{self, MAX_CONTROL_FRAME};
use protocol::{AgentMsg, ControllerMsg, close};
use quinn::Connection;
use tracing::{info, warn};

use super::{FIRST_FRAME_TIMEOUT, Shared, accept_hello, refuse};
use crate::inventory::{AgentFacts, unix_now};

/// How long after enrolling an agent may repeat its enrollment.
const ENROLL_RETRY_SECS: u64 = 3600;

pub(super) async fn handle(shared: Arc<Shared>, conn: Connection) {
    let (mut send, mut recv, hello) = match accept_hello(&conn).await {
        Ok(x) => x,
        Err(reason) => {
            refuse(&conn, None, close::REJECTED, &reason).await;
            return;
        }
    };
    let request = tokio::time::timeout(
        FIRST_FRAME_TIMEOUT,
        frame::read_frame::<_, AgentMsg>(&mut recv, MAX_CONTROL_FRAME),
    )
    .await;
    let (token, csr_pem) = match request {
        Ok(Ok(Some(AgentMsg::Enroll { token, csr_pem }))) => (token, csr_pem),
        Ok(Ok(_)) => {
            refuse(
                &conn,
                Some(&mut send),
                close::REJECTED,
                "expected Enroll after Hello",
            )
            .await;
            return;
        }
        Ok(Err(e)) => {
            refuse(
                &conn,
                None,
                close::PROTOCOL_ERROR,
                &format!("bad Enroll frame: {e}"),
            )
            .await;
            return;
        }
        Err(_) => {
            refuse(&conn, None, close::REJECTED, "no Enroll in time").await;
            return;
        }
    };
    let result = issue(&shared, &hello, &token, &csr_pem);
    match result {
        Ok(msg) => {
            let agent_id = match &msg {
                ControllerMsg::Enrolled { agent_id, .. } => agent_id.clone(),
                _ => unreachable!("issue returns Enrolled"),
            };
            if frame::write_frame(&mut send, &msg).await.is_ok() {
                let _ = send.finish();
                info!(%agent_id, role = %hello.role, hostname = %hello.hostname, "agent enrolled");
                // The agent closes once it has stored its certificate.
                let _ = tokio::time::timeout(FIRST_FRAME_TIMEOUT, conn.closed()).await;
            }
        }
        Err(reason) => {
            if let Ok(t) = JoinToken::parse(&token) {
                shared.registry.note_refusal(&t.hash().0, &reason);
            }
            refuse(&conn, Some(&mut send), close::REJECTED, &reason).await
        }
    }
}

fn issue(
    shared: &Shared,
    hello: &protocol::Hello,
    token: &str,
    csr_pem: &str,
) -> Result<ControllerMsg, String> {
    let token = JoinToken::parse(token).map_err(|e| e.to_string())?;
    let now = unix_now();
    let policy = shared
        .inventory
        .token_policy(&token.hash())
        .map_err(|e| internal(e.to_string()))?
        .ok_or_else(|| certs::TokenRefusal::Unknown.to_string())?;
    let key_fp = certs::ca::csr_key_fingerprint(csr_pem).map_err(|e| e.to_string())?;
    // The same key with the same token within the hour: the agent enrolled
    // but never got our answer. Same identity again, no second use of the
    // token (a single-use token would otherwise be burnt by a lost packet).
    let retry = shared
        .inventory
        .enrolled_with(
            &token.hash(),
            &key_fp,
            now.saturating_sub(ENROLL_RETRY_SECS),
        )
        .map_err(|e| internal(e.to_string()))?;
    if let Some((agent_id, role)) = retry
        && role == hello.role
    {
        let cert = shared
            .ca
            .sign_agent(csr_pem, &agent_id, role, shared.cert_validity)
            .map_err(|e| e.to_string())?;
        shared
            .inventory
            .record_reissue(&cert)
            .map_err(|e| internal(e.to_string()))?;
        info!(%agent_id, "enrollment retried; same identity issued again");
        return Ok(ControllerMsg::Enrolled {
            agent_id,
            cert_pem: cert.cert_pem,
            ca_pem: shared.ca.cert_pem().to_string(),
        });
    }
    policy.admit(hello.role, now).map_err(|e| e.to_string())?;
    let agent_id = AgentId::generate();
    let cert = shared
        .ca
        .sign_agent(csr_pem, &agent_id, hello.role, shared.cert_validity)
        .map_err(|e| e.to_string())?;
    let policy = shared
        .inventory
        .consume_token(&token, hello.role, now)
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| e.to_string())?;
    let facts = AgentFacts {
        hostname: &hello.hostname,
        os: &hello.os,
        arch: &hello.arch,
        agent_version: &hello.agent_version,
    };
    shared
        .inventory
        .record_enrollment(&cert, &facts, &policy, &token.hash(), &key_fp, now)
        .map_err(|e| internal(e.to_string()))?;
    Ok(ControllerMsg::Enrolled {
        agent_id,
        cert_pem: cert.cert_pem,
        ca_pem: shared.ca.cert_pem().to_string(),
    })
}

fn internal(detail: String) -> String {
    warn!(%detail, "enrollment failed inside the controller");
    "the controller could not complete enrollment (see its log)".into()
}

/// A freshly created join token, shown once.
#[derive(Debug)]
pub struct NewToken {
    pub token: JoinToken,
    pub policy: certs::TokenPolicy,
}

/// Creates and stores a join token.
pub fn create_token(
    inventory: &crate::inventory::Inventory,
    role: certs::Role,
    uses: u32,
    ttl: std::time::Duration,
    group: Option<String>,
    room: Option<String>,
) -> Result<NewToken, crate::inventory::Error> {
    let now = unix_now();
    let policy = certs::TokenPolicy {
        role,
        group,
        room,
        expires_at: now.saturating_add(ttl.as_secs()),
        uses_left: uses,
    };
    let token = JoinToken::generate();
    inventory.create_token(&token, &policy, now)?;
    Ok(NewToken { token, policy })
}

/// The one line an admin runs on the new host. It carries everything the
/// agent needs to find and authenticate the controller.
pub fn install_command(
    role: certs::Role,
    controller: &str,
    token: &JoinToken,
    pin: &certs::CaPin,
) -> String {
    let binary = match role {
        certs::Role::Monitor => "agent-monitor",
        certs::Role::Jmeter => "agent-jmeter",
    };
    format!(
        "{binary} --controller {controller} --token {} --ca-pin {pin}",
        token.expose_secret()
    )
}
