//! Alerts: rules evaluated on arriving samples, their episodes, and the
//! email that reports them. Knows nothing about QUIC or HTTP.

pub mod mailer;
pub mod rules;
