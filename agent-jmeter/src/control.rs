//! The local control channel into a running JMeter: rate changes and
//! shutdown.
//!
//! How: JMeter runs the Groovy file [`SCRIPT`] at start (its
//! `jsr223.init.file` property); the script starts a daemon thread that
//! reads commands from the JVM's **stdin**, a pipe only agent-jmeter
//! holds. Nothing listens on any socket, so no other host (and no other
//! local user) can reach it; JMeter's own BeanShell server cannot serve
//! here because it binds every interface without authentication. When the
//! pipe closes (agent-jmeter died), the script asks JMeter to shut down and
//! halts the JVM after [`ORPHAN_HALT_SECS`], so no load runs unsupervised.
//!
//! Commands are one line each, `<seq> <verb> [arg]`; the script answers
//! `MYPLATFORM-ACK <seq>` (or `MYPLATFORM-NAK <seq> <why>`) on stdout once
//! done, which the supervisor waits for.
//!
//! Owns the script, the command syntax and [`SamplesPerMin`]. Must not
//! spawn or signal processes (the supervisor does).

use std::fmt;

use loadplan::jmx::PROP_THROUGHPUT;

/// Seconds between losing the supervisor and halting the JVM: enough for a
/// graceful shutdown to finish the samples in flight.
pub const ORPHAN_HALT_SECS: u32 = 30;

/// Stdout prefix of an acknowledged command.
pub const ACK: &str = "MYPLATFORM-ACK ";
/// Stdout prefix of a refused command.
pub const NAK: &str = "MYPLATFORM-NAK ";
/// Printed once the control thread reads commands.
pub const READY: &str = "MYPLATFORM-READY";

/// The Groovy init script. Why each part:
/// - a daemon thread: it must never keep the JVM alive after the test;
/// - only `myplatform.*` properties can be set: the channel changes the
///   run's knobs, not JMeter's configuration;
/// - `stopEngine` is what JMeter's own "Shutdown" message does (threads
///   finish their current sample); `stopEngineNow` is "StopTestNow";
/// - a rate raise pulls the shared schedule of the Constant Throughput
///   Timers (calcMode 3) back to at most [`RAISE_LAG_MS`] ahead. That
///   schedule is handed out slot by slot at the old spacing: after a deep
///   cut every waiting thread holds a slot far ahead, and the first sample
///   at the new rate would come only after all of them (threads ÷ old
///   rate: 4 s measured for 20 → 100 TPS). Threads already asleep keep
///   their slots (interrupting them would unpace their next sample), so
///   between the new schedule's start and the last old slot both run: the
///   total overshoots by the old rate. Pulling back only as far as
///   `RAISE_LAG_MS` bounds that: ordinary raises, whose slots reach less
///   far, are untouched; after a deep cut the new rate starts within the
///   bound, and the overshoot is the cut rate, a fraction of the new one.
///   A cut keeps the schedule: the waiting slots drain, then the new
///   spacing applies. The pull goes through reflection on JMeter's private
///   fields; if a JMeter version lacks them, the rate still changes, only
///   more slowly, and the script says so once in JMeter's log.
pub const SCRIPT: &str = r#"// MyPlatform agent-jmeter control channel (generated; see agent-jmeter/src/control.rs).
import org.apache.jmeter.engine.StandardJMeterEngine
import org.apache.jmeter.util.JMeterUtils

// Pulls the shared CTT schedule back to at most the raise lag ahead;
// false when this JMeter's timer has no such fields.
def pullScheduleToNow = {
    try {
        def loader = StandardJMeterEngine.class.getClassLoader()
        def ctt = Class.forName("org.apache.jmeter.timers.ConstantThroughputTimer", true, loader)
        def shared = ctt.getDeclaredField("allThreadsInfo")
        shared.setAccessible(true)
        def info = shared.get(null)
        def mutexField = info.getClass().getDeclaredField("MUTEX")
        mutexField.setAccessible(true)
        def last = info.getClass().getDeclaredField("lastScheduledTime")
        last.setAccessible(true)
        synchronized (mutexField.get(info)) {
            long latest = System.currentTimeMillis() + RAISE_LAG_MS
            if (last.getLong(info) > latest) last.setLong(info, latest)
        }
        return true
    } catch (Throwable e) {
        return false
    }
}

def raised = { String before, String after ->
    try {
        return before != null && Double.parseDouble(after) > Double.parseDouble(before)
    } catch (NumberFormatException e) {
        return false
    }
}

def control = new Thread({
    def jprops = JMeterUtils.getJMeterProperties()
    boolean resetWarned = false
    def input = new BufferedReader(new InputStreamReader(System.in, "UTF-8"))
    def say = { String s -> System.out.println(s); System.out.flush() }
    say("MYPLATFORM-READY")
    String line
    while ((line = input.readLine()) != null) {
        def p = line.trim().split(" ")
        if (p.length < 2) continue
        try {
            if (p[1] == "set" && p.length == 4 && p[2].startsWith("myplatform.")) {
                def old = jprops.getProperty(p[2])
                jprops.setProperty(p[2], p[3])
                if (p[2] == "myplatform.throughput" && raised(old, p[3])
                        && !pullScheduleToNow() && !resetWarned) {
                    resetWarned = true
                    org.slf4j.LoggerFactory.getLogger("myplatform.control").warn(
                        "cannot reset the Constant Throughput Timer schedule in this JMeter; rate raises take effect more slowly")
                }
            } else if (p[1] == "shutdown" && p.length == 2) {
                StandardJMeterEngine.stopEngine()
            } else if (p[1] == "stopnow" && p.length == 2) {
                StandardJMeterEngine.stopEngineNow()
            } else {
                say("MYPLATFORM-NAK " + p[0] + " unknown command")
                continue
            }
            say("MYPLATFORM-ACK " + p[0])
        } catch (Throwable e) {
            say("MYPLATFORM-NAK " + p[0] + " " + e.toString().replace('\n', ' '))
        }
    }
    // The supervisor is gone: nobody can read results or stop this run.
    StandardJMeterEngine.stopEngine()
    Thread.sleep(ORPHAN_HALT_MS)
    Runtime.getRuntime().halt(3)
} as Runnable, "myplatform-control")
control.setDaemon(true)
control.start()
"#;

/// How far ahead the shared rate schedule may reach after a raise: the
/// longest a raise waits for slots handed out at the old rate.
pub const RAISE_LAG_MS: u64 = 500;

/// The script with its constants filled in.
pub fn script() -> String {
    SCRIPT
        .replace(
            "ORPHAN_HALT_MS",
            &(u64::from(ORPHAN_HALT_SECS) * 1000).to_string(),
        )
        .replace("RAISE_LAG_MS", &RAISE_LAG_MS.to_string())
}

/// A rate JMeter's Constant Throughput Timer can hold: finite, above zero
/// (zero or less would mean "no pacing at all", i.e. full speed) and at
/// most [`SamplesPerMin::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct SamplesPerMin(f64);

impl SamplesPerMin {
    /// 100 000 samples/s: ~100× what one JMeter is advised to generate;
    /// anything above is a typo (or per-second given as per-minute × 60).
    pub const MAX: f64 = 6_000_000.0;

    pub fn new(v: f64) -> Result<SamplesPerMin, String> {
        if v.is_finite() && v > 0.0 && v <= Self::MAX {
            Ok(SamplesPerMin(v))
        } else {
            Err(format!(
                "a rate of {v} samples/minute is not possible: give more than 0 and at most {}",
                Self::MAX
            ))
        }
    }

    pub fn per_sec(tps: f64) -> Result<SamplesPerMin, String> {
        SamplesPerMin::new(tps * 60.0)
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl fmt::Display for SamplesPerMin {
    /// Plain decimal (JMeter parses it with `Double.parseDouble`), no
    /// exponent, trailing zeros cut.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = format!("{:.3}", self.0);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        f.write_str(s)
    }
}

/// A command for the script.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    Throughput(SamplesPerMin),
    /// Graceful: threads finish their current sample.
    Shutdown,
    /// Interrupts samples in flight.
    StopNow,
}

impl Command {
    /// The line sent for sequence number `seq`.
    pub fn line(&self, seq: u64) -> String {
        match self {
            Command::Throughput(t) => format!("{seq} set {PROP_THROUGHPUT} {t}\n"),
            Command::Shutdown => format!("{seq} shutdown\n"),
            Command::StopNow => format!("{seq} stopnow\n"),
        }
    }
}

/// What a stdout line of JMeter says about the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ready,
    Ack(u64),
    Nak(u64, String),
}

impl Reply {
    pub fn parse(line: &str) -> Option<Reply> {
        let line = line.trim_end();
        if line == READY {
            return Some(Reply::Ready);
        }
        if let Some(rest) = line.strip_prefix(ACK) {
            return rest.trim().parse().ok().map(Reply::Ack);
        }
        let rest = line.strip_prefix(NAK)?;
        let (seq, why) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(Reply::Nak(seq.parse().ok()?, why.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_what_jmeter_can_pace_are_refused() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 6_000_001.0] {
            assert!(SamplesPerMin::new(bad).is_err(), "{bad}");
        }
        assert_eq!(SamplesPerMin::per_sec(20.0).unwrap().to_string(), "1200");
        assert_eq!(SamplesPerMin::new(0.5).unwrap().to_string(), "0.5");
    }

    #[test]
    fn commands_and_replies() {
        let t = SamplesPerMin::new(2400.0).unwrap();
        assert_eq!(
            Command::Throughput(t).line(7),
            "7 set myplatform.throughput 2400\n"
        );
        assert_eq!(Command::Shutdown.line(8), "8 shutdown\n");
        assert_eq!(Reply::parse("MYPLATFORM-ACK 7\n"), Some(Reply::Ack(7)));
        assert_eq!(
            Reply::parse("MYPLATFORM-NAK 9 unknown command"),
            Some(Reply::Nak(9, "unknown command".into()))
        );
        assert_eq!(Reply::parse("MYPLATFORM-READY"), Some(Reply::Ready));
        assert_eq!(Reply::parse("summary +  10 in 00:00:01"), None);
        assert!(script().contains("Thread.sleep(30000)"));
        assert!(script().contains("System.currentTimeMillis() + 500"));
    }
}
