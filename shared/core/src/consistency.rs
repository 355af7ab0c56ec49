//! Application-consistent snapshots (policy `consistency: application`): the
//! commands run on the instance through SSM Run Command around the
//! snapshot, and what a failed or timed-out command means for the snapshot.
//! Pure: the SSM and EC2 calls belong to create-snapshots.
//!
//! The default pre command flushes and freezes the filesystems of the
//! volumes being snapshotted; the post command thaws them. Safety first:
//!
//! - the pre command starts a **watchdog** on the instance *before* it
//!   freezes anything: whatever happens to the function afterwards (a crash,
//!   a timeout, a lost network), every filesystem it froze is thawed after
//!   [`FREEZE_WATCHDOG`];
//! - if one freeze fails, the pre command thaws what it froze and fails;
//! - the root filesystem is never frozen (the SSM agent itself writes there);
//! - the post command thaws what the pre command recorded, and is harmless
//!   to run twice or when nothing is frozen.
//!
//! Volumes are found on the instance by their NVMe serial (Nitro instances
//! report the volume id without its dash) or by the device name given at
//! attach (`/dev/sdf`, which Xen instances show as `/dev/xvdf`).

use std::time::Duration;

use crate::keys::ConsistencyLabel;

/// How long a filesystem may stay frozen if the post command never comes.
/// Long enough for the pre command's result to be read, CreateSnapshots to
/// return (its point in time is fixed then) and the post command to be
/// sent, with throttling retries; short enough that a stuck application
/// recovers by itself.
pub const FREEZE_WATCHDOG: Duration = Duration::from_secs(90);

/// Where the commands keep their state on the instance (tmpfs: a reboot
/// thaws everything anyway).
pub const STATE_DIR: &str = "/run/ebs-lifecycle";

/// What the pre command freezes: the volumes of the snapshot set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenVolume {
    pub volume_id: String,
    /// The device name at attach, e.g. `/dev/sdf`.
    pub device: String,
}

/// Characters allowed in a volume id or device name put into a script;
/// anything else is refused rather than quoted (ids come from EC2, but a
/// script is no place to trust input).
fn safe(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_'))
}

/// The default pre command (a bash script for `AWS-RunShellScript`): find
/// the filesystems of `volumes`, start the watchdog, flush, freeze.
/// `None` if a volume id or device holds characters a script must not get.
pub fn freeze_script(volumes: &[FrozenVolume], watchdog: Duration) -> Option<String> {
    if !volumes
        .iter()
        .all(|v| safe(&v.volume_id) && safe(&v.device))
    {
        return None;
    }
    let serials: Vec<String> = volumes
        .iter()
        .map(|v| v.volume_id.replace('-', ""))
        .collect();
    let devices: Vec<&str> = volumes.iter().map(|v| v.device.as_str()).collect();
    Some(format!(
        r#"#!/bin/bash
# ebs-snapshot-lifecycle: flush and freeze before the snapshot.
set -u
state="${{EBS_LIFECYCLE_STATE:-{STATE_DIR}}}"
mkdir -p "$state"
serials="{serials}"
attached="{devices}"
disks=""
for s in $serials; do
  for name in $(lsblk -rndo NAME,SERIAL | awk -v s="$s" '$2 == s {{print $1}}'); do
    disks="$disks /dev/$name"
  done
done
for d in $attached; do
  xen="/dev/xvd${{d#/dev/sd}}"
  [ -b "$xen" ] && disks="$disks $xen"
  [ -b "$d" ] && disks="$disks $d"
done
# Mount points on those disks and their partitions; never the root filesystem.
mounts=$(for d in $disks; do lsblk -rno MOUNTPOINT "$d"; done | grep -v '^$' | grep -vx '/' | sort -u)
printf '%s\n' $mounts > "$state/frozen"
# The watchdog first: whatever happens next, everything is thawed in {watchdog}s.
setsid bash -c "sleep {watchdog}; while read -r m; do [ -n \"\$m\" ] && fsfreeze -u \"\$m\" 2>/dev/null; done < '$state/frozen'" >/dev/null 2>&1 < /dev/null &
echo $! > "$state/watchdog"
sync
for m in $mounts; do
  if ! fsfreeze -f "$m"; then
    echo "could not freeze $m; thawing" >&2
    while read -r f; do [ -n "$f" ] && fsfreeze -u "$f" 2>/dev/null; done < "$state/frozen"
    kill -- -"$(cat "$state/watchdog")" 2>/dev/null
    rm -f "$state/frozen" "$state/watchdog"
    exit 1
  fi
done
echo "frozen:" $mounts
"#,
        serials = serials.join(" "),
        devices = devices.join(" "),
        watchdog = watchdog.as_secs().max(1),
    ))
}

/// The default post command: thaw what the pre command froze, stop its
/// watchdog. Succeeds when nothing is frozen, so it may run on every path.
pub fn thaw_script() -> String {
    format!(
        r#"#!/bin/bash
# ebs-snapshot-lifecycle: thaw after the snapshot.
set -u
state="${{EBS_LIFECYCLE_STATE:-{STATE_DIR}}}"
if [ ! -f "$state/frozen" ]; then echo "nothing frozen"; exit 0; fi
while read -r m; do [ -n "$m" ] && fsfreeze -u "$m" 2>/dev/null; done < "$state/frozen"
if [ -f "$state/watchdog" ]; then kill -- -"$(cat "$state/watchdog")" 2>/dev/null; fi
rm -f "$state/frozen" "$state/watchdog"
echo thawed
"#
    )
}

/// How a command on the instance (the pre or the post command) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Succeeded,
    /// It ran and failed; the excerpt of its output says why.
    Failed {
        output: String,
    },
    /// No result within the policy's `command_timeout` (or before the
    /// invocation's deadline).
    TimedOut,
    /// The instance has no SSM agent online (not a managed instance).
    NotManaged,
}

impl CommandOutcome {
    /// A short stable name for summaries and notifications.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed { .. } => "failed",
            Self::TimedOut => "timed-out",
            Self::NotManaged => "not-managed",
        }
    }

    /// What the instance said, if anything.
    pub fn output(&self) -> Option<&str> {
        match self {
            Self::Failed { output } => Some(output),
            _ => None,
        }
    }
}

/// What to do when the pre command did not succeed (per policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCommandFailure {
    /// Take the snapshot crash-consistent, labelled `crash-fallback` (default,
    /// as Data Lifecycle Manager does): a backup now beats none.
    #[default]
    Fallback,
    /// Take no snapshot this slot; the next tick tries again.
    Skip,
}

/// The snapshot's fate after the pre command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Snapshot(ConsistencyLabel),
    Skip,
}

pub fn decide(pre: &CommandOutcome, on_failure: OnCommandFailure) -> Decision {
    match (pre, on_failure) {
        (CommandOutcome::Succeeded, _) => Decision::Snapshot(ConsistencyLabel::Application),
        (_, OnCommandFailure::Fallback) => Decision::Snapshot(ConsistencyLabel::CrashFallback),
        (_, OnCommandFailure::Skip) => Decision::Skip,
    }
}

/// Whether the post command must run: after every pre command that may
/// have frozen something (succeeded, failed part-way, or still running when
/// the function stopped waiting), whatever happened to the snapshot since.
pub fn needs_thaw(pre: &CommandOutcome) -> bool {
    !matches!(pre, CommandOutcome::NotManaged)
}

/// What a `stopped` policy does with an instance, from its state, its
/// owner's opt-in and whether this deployment stopped it earlier (the
/// `lifecycle:stopped-for-snapshot` mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopPlan {
    /// No `lifecycle:allow-stop=true`: never stopped. The snapshot is taken
    /// crash-consistent (`crash-fallback`) and the owner told.
    NotAllowed,
    /// Stopped by its owner: snapshot as it is, leave it stopped.
    SnapshotAsIs,
    /// Stop it (unless it is stopping or stopped already because of us), wait
    /// until stopped, snapshot, start it again.
    StopAndRestart,
    /// Starting or stopping for someone else: try again next tick.
    Busy,
}

pub fn stop_plan(state: &str, allow_stop: bool, stopped_by_us: bool) -> StopPlan {
    match (state, stopped_by_us) {
        // Our own earlier stop (a crash, or a stop slower than the deadline):
        // it was running, so it is started again whatever the opt-in says now.
        ("stopping" | "stopped", true) => StopPlan::StopAndRestart,
        ("stopped", false) => StopPlan::SnapshotAsIs,
        (_, _) if !allow_stop => StopPlan::NotAllowed,
        ("running", _) => StopPlan::StopAndRestart,
        _ => StopPlan::Busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn volumes() -> Vec<FrozenVolume> {
        vec![
            FrozenVolume {
                volume_id: "vol-0aaa".into(),
                device: "/dev/sdf".into(),
            },
            FrozenVolume {
                volume_id: "vol-0bbb".into(),
                device: "/dev/sdg".into(),
            },
        ]
    }

    #[test]
    fn decisions_follow_the_failure_policy() {
        use ConsistencyLabel::*;
        let failed = CommandOutcome::Failed { output: "x".into() };
        for (pre, fallback, skip) in [
            (
                CommandOutcome::Succeeded,
                Decision::Snapshot(Application),
                Decision::Snapshot(Application),
            ),
            (failed, Decision::Snapshot(CrashFallback), Decision::Skip),
            (
                CommandOutcome::TimedOut,
                Decision::Snapshot(CrashFallback),
                Decision::Skip,
            ),
            (
                CommandOutcome::NotManaged,
                Decision::Snapshot(CrashFallback),
                Decision::Skip,
            ),
        ] {
            assert_eq!(
                decide(&pre, OnCommandFailure::Fallback),
                fallback,
                "{pre:?}"
            );
            assert_eq!(decide(&pre, OnCommandFailure::Skip), skip, "{pre:?}");
        }
        assert!(
            needs_thaw(&CommandOutcome::TimedOut),
            "it may have frozen before timing out"
        );
        assert!(!needs_thaw(&CommandOutcome::NotManaged));
    }

    #[test]
    fn only_an_opted_in_running_instance_is_stopped_and_ours_are_always_restarted() {
        use StopPlan::*;
        let cases = [
            // state, allow-stop, marked by us -> plan
            ("running", true, false, StopAndRestart),
            ("running", false, false, NotAllowed),
            ("running", true, true, StopAndRestart),
            // someone started it after our crash, and removed the opt-in
            ("running", false, true, NotAllowed),
            ("stopped", true, false, SnapshotAsIs),
            ("stopped", false, false, SnapshotAsIs),
            ("stopped", false, true, StopAndRestart),
            ("stopped", true, true, StopAndRestart),
            ("stopping", true, true, StopAndRestart),
            ("stopping", true, false, Busy),
            ("pending", true, false, Busy),
            ("pending", true, true, Busy),
            ("stopping", false, false, NotAllowed),
            ("shutting-down", true, false, Busy),
        ];
        for (state, allow, ours, plan) in cases {
            assert_eq!(
                stop_plan(state, allow, ours),
                plan,
                "{state} {allow} {ours}"
            );
        }
    }

    #[test]
    fn ids_a_script_must_not_get_are_refused() {
        let mut v = volumes();
        v[1].volume_id = "vol-1; reboot".into();
        assert_eq!(freeze_script(&v, FREEZE_WATCHDOG), None);
        v[1].volume_id = "vol-1".into();
        v[1].device = "/dev/sd$(x)".into();
        assert_eq!(freeze_script(&v, FREEZE_WATCHDOG), None);
    }

    /// The scripts run in bash against stand-ins for lsblk and fsfreeze
    /// (PATH shims that log every call): the volumes' filesystems, and
    /// never root, are frozen after the watchdog starts; the thaw undoes
    /// them; and if the thaw never comes, the watchdog does it.
    #[test]
    fn the_scripts_freeze_the_right_filesystems_and_always_thaw() {
        if Command::new("bash").arg("--version").output().is_err() {
            return; // no bash: nothing to run the scripts with
        }
        let dir = std::env::temp_dir().join(format!("ebs-consistency-{}", std::process::id()));
        let bin = dir.join("bin");
        let state = dir.join("state");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.join("calls.log");
        // nvme1n1 is vol-0aaa (mounted at /data and /data/logs on a
        // partition); nvme0n1 is root; vol-0bbb is not attached here.
        let lsblk = r#"#!/bin/bash
case "$*" in
  "-rndo NAME,SERIAL") printf 'nvme0n1 vol0root\nnvme1n1 vol0aaa\n' ;;
  "-rno MOUNTPOINT /dev/nvme1n1") printf '\n/data\n/data/logs\n/\n' ;;
  *) ;;
esac
"#;
        // Fails to freeze the mount named by FAIL_FREEZE, as a busy or
        // unsupported filesystem would.
        let fsfreeze = format!(
            "#!/bin/bash\nif [ \"$1\" = -f ] && [ \"$2\" = \"${{FAIL_FREEZE:-}}\" ]; then exit 1; fi\necho \"$1 $2\" >> '{}'\n",
            log.display()
        );
        for (name, body) in [("lsblk", lsblk.to_string()), ("fsfreeze", fsfreeze)] {
            let path = bin.join(name);
            std::fs::write(&path, body).unwrap();
            let _ = Command::new("chmod").arg("+x").arg(&path).status();
        }
        let run_failing = |script: &str, fail: &str| {
            Command::new("bash")
                .arg("-c")
                .arg(script)
                .env("FAIL_FREEZE", fail)
                .env(
                    "PATH",
                    format!(
                        "{}:{}",
                        bin.display(),
                        std::env::var("PATH").unwrap_or_default()
                    ),
                )
                .env("EBS_LIFECYCLE_STATE", &state)
                .output()
                .unwrap()
        };
        let run = |script: &str| run_failing(script, "");
        let calls = || std::fs::read_to_string(&log).unwrap_or_default();

        // Freeze then thaw.
        let frozen = run(&freeze_script(&volumes(), Duration::from_secs(30)).unwrap());
        assert!(frozen.status.success(), "{frozen:?}");
        assert_eq!(
            calls(),
            "-f /data\n-f /data/logs\n",
            "the volume's filesystems, not root"
        );
        let thawed = run(&thaw_script());
        assert!(thawed.status.success(), "{thawed:?}");
        assert_eq!(
            calls(),
            "-f /data\n-f /data/logs\n-u /data\n-u /data/logs\n"
        );
        // Thawing again is harmless.
        assert!(run(&thaw_script()).status.success());

        // Freeze, and the thaw never comes: the watchdog thaws.
        std::fs::write(&log, "").unwrap();
        let frozen = run(&freeze_script(&volumes(), Duration::from_secs(1)).unwrap());
        assert!(frozen.status.success(), "{frozen:?}");
        let mut waited = Duration::ZERO;
        while !calls().contains("-u /data/logs") && waited < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            waited += Duration::from_millis(100);
        }
        assert_eq!(
            calls(),
            "-f /data\n-f /data/logs\n-u /data\n-u /data/logs\n",
            "the watchdog thawed"
        );

        // A freeze that fails part-way: what was frozen is thawed at once,
        // and the command fails (so the snapshot falls back or is skipped).
        std::fs::write(&log, "").unwrap();
        let failed = run_failing(
            &freeze_script(&volumes(), Duration::from_secs(30)).unwrap(),
            "/data/logs",
        );
        assert!(!failed.status.success());
        // Every recorded mount is thawed; thawing the one that never froze
        // is a harmless error.
        assert_eq!(calls(), "-f /data\n-u /data\n-u /data/logs\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
