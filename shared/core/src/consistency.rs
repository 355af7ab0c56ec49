//! Application-consistent snapshots (policy `consistency: application`): the
//! commands run on the instance through SSM Run Command around the
//! snapshot, and what a failed or timed-out command means for the snapshot.
//! Pure: the SSM and EC2 calls belong to create-snapshots.
//!
//! The default pre command flushes and freezes the filesystems of the
//! volumes being snapshotted; the post command thaws them. Safety first:
//!
//! - the pre command starts a **watchdog** on the instance *before* it
//!   freezes anything; it outlives the script and thaws everything
//!   [`FREEZE_WATCHDOG`] after the *last* freeze, whatever happens to the
//!   function (a crash, a timeout, a lost network) and however long `sync`
//!   took;
//! - freeze and thaw are serialised by a lock on the instance: a thaw sent
//!   while a freeze is still running waits for it, then undoes it;
//! - if one freeze fails, the pre command thaws what it froze and fails;
//! - only ext4, xfs and btrfs are frozen ([`FREEZABLE`]); never the root
//!   file system (the SSM agent itself writes there), `/boot/efi` or swap;
//! - the post command thaws what the pre command recorded, and is harmless
//!   to run twice or when nothing is frozen.
//!
//! Volumes are found on the instance by their NVMe serial (Nitro instances
//! report the volume id without its dash), and only when no serial matched
//! by the device name given at attach (`/dev/sdf`, which Xen instances show
//! as `/dev/xvdf`). create-snapshots labels a set `application` only if it
//! was started inside the watchdog's window, counted from when the pre
//! command was sent (the freeze cannot be earlier).

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
pub(crate) const STATE_DIR: &str = "/run/ebs-lifecycle";

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

/// The file systems the default pre command freezes (by `lsblk` FSTYPE);
/// anything else (vfat `/boot/efi`, swap, tmpfs) would fail `fsfreeze` with
/// EOPNOTSUPP and make every slot fall back.
pub(crate) const FREEZABLE: [&str; 3] = ["ext4", "xfs", "btrfs"];

/// The default pre command (a bash script for `AWS-RunShellScript`): find
/// the filesystems of `volumes`, start the watchdog, flush, freeze.
/// `None` if a volume id or device holds characters a script must not get.
///
/// - Freeze and thaw are serialised by a lock (`flock` on the state
///   directory): a thaw sent while the freeze is still in `sync` or
///   `fsfreeze -f` (neither can be interrupted) waits for it, then undoes it.
/// - The watchdog runs apart from the script (it outlives it, and does not
///   hold the lock) and thaws everything `watchdog` after the **last**
///   freeze, whatever the command's timeout: the time is re-read from a
///   file touched before and after every freeze, so a freeze that
///   completes late is thawed late too.
/// - Only freezable file systems ([`FREEZABLE`]) are frozen, never `/` or
///   `/boot/efi`; volumes are matched by NVMe serial first, device names
///   only when no serial matched (on Nitro a `/dev/sdX` name may be another
///   disk).
pub fn freeze_script(volumes: &[FrozenVolume], watchdog: Duration) -> Option<String> {
    let p = FreezeParameters::of(volumes, watchdog)?;
    Some(format!(
        "#!/bin/bash\n# ebs-snapshot-lifecycle: flush and freeze before the snapshot.\n{}",
        freeze_body(&p.serials, &p.devices, &p.watchdog)
    ))
}

/// What the default freeze needs to know, as the stack's SSM document takes
/// it (`serials`, `devices`, `watchdog` parameters; each restricted by an
/// `allowedPattern` in the document to the characters these can hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeParameters {
    /// NVMe serials (volume ids without the dash), space-separated.
    pub serials: String,
    /// Device names at attach, space-separated.
    pub devices: String,
    /// Seconds from the last freeze to the watchdog's thaw.
    pub watchdog: String,
}

impl FreezeParameters {
    /// `None` if a volume id or device holds characters a script must not get.
    pub fn of(volumes: &[FrozenVolume], watchdog: Duration) -> Option<Self> {
        if !volumes
            .iter()
            .all(|v| safe(&v.volume_id) && safe(&v.device))
        {
            return None;
        }
        Some(Self {
            serials: volumes
                .iter()
                .map(|v| v.volume_id.replace('-', ""))
                .collect::<Vec<_>>()
                .join(" "),
            devices: volumes
                .iter()
                .map(|v| v.device.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            watchdog: watchdog.as_secs().max(1).to_string(),
        })
    }
}

/// The freeze, with its three inputs as given (values, or the SSM
/// document's `{{ parameter }}` placeholders).
fn freeze_body(serials: &str, devices: &str, watchdog: &str) -> String {
    let freezable = FREEZABLE
        .iter()
        .map(|t| format!("$2 == \"{t}\""))
        .collect::<Vec<_>>()
        .join(" || ");
    format!(
        r#"set -u
state="${{EBS_LIFECYCLE_STATE:-{STATE_DIR}}}"
mkdir -p "$state"
# One freeze or thaw at a time: a thaw sent meanwhile waits for this script.
exec 9>"$state/lock"
flock 9
serials="{serials}"
attached="{devices}"
disks=""
for s in $serials; do
  for name in $(lsblk -rndo NAME,SERIAL | awk -v s="$s" '$2 == s {{print $1}}'); do
    disks="$disks /dev/$name"
  done
done
# Device names only when no serial matched: on Nitro /dev/sdX is not the
# NVMe name and may be another disk.
if [ -z "$disks" ]; then
  known=" $(lsblk -rndo NAME | tr '\n' ' ') "
  for d in $attached; do
    for name in "xvd${{d#/dev/sd}}" "${{d#/dev/}}"; do
      case "$known" in *" $name "*) disks="$disks /dev/$name" ;; esac
    done
  done
fi
# Freezable file systems on those disks and their partitions; never the
# root file system or the EFI partition, never swap.
mounts=$(for d in $disks; do lsblk -rno MOUNTPOINT,FSTYPE "$d"; done \
  | awk '({freezable}) && $1 != "" && $1 != "/" && $1 != "/boot/efi" {{print $1}}' | sort -u)
printf '%s\n' $mounts > "$state/frozen"
rm -f "$state/frozen-at"
# The watchdog: {watchdog} s after the last freeze, everything is thawed,
# whatever became of this script or the thaw. It does not hold the lock.
pre=$$
setsid bash -c '
  state="$1"; pre="$2"; after="$3"
  while :; do
    at=$(stat -c %Y "$state/frozen-at" 2>/dev/null)
    if [ -n "$at" ]; then
      if [ $(( $(date +%s) - at )) -ge "$after" ]; then
        while read -r m; do [ -n "$m" ] && fsfreeze -u "$m" 2>/dev/null; done < "$state/frozen"
        rm -f "$state/frozen-at"
      fi
    elif ! kill -0 "$pre" 2>/dev/null; then
      exit 0
    fi
    sleep 1
  done' watchdog "$state" "$pre" {watchdog} 9>&- >/dev/null 2>&1 < /dev/null &
echo $! > "$state/watchdog"
sync
for m in $mounts; do
  touch "$state/frozen-at"
  if ! fsfreeze -f "$m"; then
    echo "could not freeze $m; thawing" >&2
    while read -r f; do [ -n "$f" ] && fsfreeze -u "$f" 2>/dev/null; done < "$state/frozen"
    kill -- -"$(cat "$state/watchdog")" 2>/dev/null
    rm -f "$state/frozen" "$state/frozen-at" "$state/watchdog"
    exit 1
  fi
  touch "$state/frozen-at"
done
echo "frozen:" $mounts
"#
    )
}

/// How long the thaw waits for a freeze in progress before thawing anyway
/// (the watchdog then catches a freeze that completes even later).
pub(crate) const THAW_WAITS_FOR_FREEZE: Duration = Duration::from_secs(300);

/// The default post command: wait for a freeze in progress, thaw what the
/// pre command froze, stop its watchdog. Succeeds when nothing is frozen,
/// so it may run on every path.
pub fn thaw_script() -> String {
    format!(
        "#!/bin/bash\n# ebs-snapshot-lifecycle: thaw after the snapshot.\n{}",
        thaw_body()
    )
}

fn thaw_body() -> String {
    format!(
        r#"set -u
state="${{EBS_LIFECYCLE_STATE:-{STATE_DIR}}}"
mkdir -p "$state"
exec 9>"$state/lock"
flock -w {wait} 9 || echo "a freeze still holds the lock after {wait} s; thawing anyway (the watchdog thaws a later one)" >&2
if [ ! -f "$state/frozen" ]; then echo "nothing frozen"; exit 0; fi
while read -r m; do [ -n "$m" ] && fsfreeze -u "$m" 2>/dev/null; done < "$state/frozen"
if [ -f "$state/watchdog" ]; then kill -- -"$(cat "$state/watchdog")" 2>/dev/null; fi
rm -f "$state/frozen" "$state/frozen-at" "$state/watchdog"
echo thawed
"#,
        wait = THAW_WAITS_FOR_FREEZE.as_secs()
    )
}

/// The script of the stack's own SSM document (template.yaml,
/// `FreezeThawDocument`): the thaw when `{{ action }}` is `thaw`, else the
/// freeze, with the document's parameters as placeholders that SSM fills
/// in. The template carries this text verbatim; a test holds the two equal,
/// so the document is versioned with the code.
pub fn document_script() -> String {
    format!(
        "#!/bin/bash\n# ebs-snapshot-lifecycle: freeze or thaw around a snapshot.\nif [ \"{{{{ action }}}}\" = thaw ]; then\n(\n{thaw})\nexit $?\nfi\n{freeze}",
        thaw = thaw_body(),
        freeze = freeze_body("{{ serials }}", "{{ devices }}", "{{ watchdog }}"),
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
/// stack's ledger says so; the `lifecycle:stopped-for-snapshot` tag is only
/// a marker).
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
  "-rndo NAME") printf 'nvme0n1\nnvme1n1\n' ;;
  "-rno MOUNTPOINT,FSTYPE /dev/nvme1n1") printf ' \n/data ext4\n/data/logs xfs\n/ ext4\n' ;;
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
        // Each filesystem frozen once and thawed after its freeze. Not the
        // order across filesystems: with a 1 s watchdog on a loaded machine
        // the watchdog may thaw /data before /data/logs is frozen (seen once
        // beside a demo and a build), and then thaws that too.
        let log_text = calls();
        let lines: Vec<&str> = log_text.lines().collect();
        for fs in ["/data", "/data/logs"] {
            let at = |op: &str| lines.iter().position(|l| *l == format!("{op} {fs}"));
            let (frozen, thawed) = (at("-f"), at("-u"));
            assert!(
                frozen.is_some() && thawed > frozen,
                "the watchdog thawed {fs}: {lines:?}"
            );
        }
        assert_eq!(lines.len(), 4, "{lines:?}");

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

    /// Stand-ins for the instance's tools in a directory of their own.
    struct Instance {
        dir: std::path::PathBuf,
        log: std::path::PathBuf,
    }

    impl Instance {
        fn new(name: &str, lsblk: &str, sync_seconds: u32) -> Self {
            let dir = std::env::temp_dir().join(format!("ebs-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let bin = dir.join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let log = dir.join("calls.log");
            // fsfreeze -f blocks while the file `hold` exists (a freeze in
            // progress cannot be interrupted); every call is logged once done.
            let fsfreeze = format!(
                "#!/bin/bash\nif [ \"$1\" = -f ]; then while [ -f '{hold}' ]; do sleep 0.05; done; fi\necho \"$1 $2\" >> '{log}'\n",
                hold = dir.join("hold").display(),
                log = log.display()
            );
            let sync = format!("#!/bin/bash\nsleep {sync_seconds}\n");
            for (tool, body) in [
                ("lsblk", lsblk.to_string()),
                ("fsfreeze", fsfreeze),
                ("sync", sync),
            ] {
                let path = bin.join(tool);
                std::fs::write(&path, body).unwrap();
                let _ = Command::new("chmod").arg("+x").arg(&path).status();
            }
            Self { dir, log }
        }

        fn command(&self, script: &str) -> Command {
            let mut c = Command::new("bash");
            c.arg("-c").arg(script);
            let path = std::env::var("PATH").unwrap_or_default();
            c.env("PATH", format!("{}:{path}", self.dir.join("bin").display()));
            c.env("EBS_LIFECYCLE_STATE", self.dir.join("state"));
            c
        }

        fn calls(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        }

        fn wait_for(&self, text: &str, limit: Duration) -> bool {
            let start = std::time::Instant::now();
            while start.elapsed() < limit {
                if self.calls().contains(text) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        }
    }

    fn bash() -> bool {
        Command::new("bash").arg("--version").output().is_ok()
            && Command::new("flock").arg("--version").output().is_ok()
    }

    /// The root volume's set holds `/boot/efi` (vfat) and swap, and an
    /// unrelated `/dev/sdg` exists: only ext4/xfs/btrfs of the matched disk
    /// are frozen, so the freeze succeeds. With no serial matched, the
    /// device name given at attach finds the Xen name.
    #[test]
    fn only_freezable_file_systems_of_the_matched_disks_are_frozen() {
        if !bash() {
            return;
        }
        let lsblk = r#"#!/bin/bash
case "$*" in
  "-rndo NAME,SERIAL") printf 'nvme0n1 vol0root\nsdg othervolume\n' ;;
  "-rndo NAME") printf 'nvme0n1\nsdg\nxvdh\n' ;;
  "-rno MOUNTPOINT,FSTYPE /dev/nvme0n1") printf ' \n/boot/efi vfat\n[SWAP] swap\n/ ext4\n/srv btrfs\n' ;;
  "-rno MOUNTPOINT,FSTYPE /dev/sdg") printf '/unrelated ext4\n' ;;
  "-rno MOUNTPOINT,FSTYPE /dev/xvdh") printf '/legacy xfs\n' ;;
  *) ;;
esac
"#;
        let box_ = Instance::new("freezable", lsblk, 0);
        let root = vec![FrozenVolume {
            volume_id: "vol-0root".into(),
            device: "/dev/sdg".into(),
        }];
        let out = box_
            .command(&freeze_script(&root, Duration::from_secs(30)).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            box_.calls(),
            "-f /srv\n",
            "not /, /boot/efi, swap or the unrelated sdg"
        );
        assert!(box_.command(&thaw_script()).status().unwrap().success());

        std::fs::write(&box_.log, "").unwrap();
        let legacy = vec![FrozenVolume {
            volume_id: "vol-0legacy".into(),
            device: "/dev/sdh".into(),
        }];
        let out = box_
            .command(&freeze_script(&legacy, Duration::from_secs(30)).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            box_.calls(),
            "-f /legacy\n",
            "no serial: the attach name, as Xen shows it"
        );
        assert!(box_.command(&thaw_script()).status().unwrap().success());
        let _ = std::fs::remove_dir_all(&box_.dir);
    }

    const DATA_DISK: &str = r#"#!/bin/bash
case "$*" in
  "-rndo NAME,SERIAL") printf 'nvme1n1 vol0aaa\n' ;;
  "-rndo NAME") printf 'nvme1n1\n' ;;
  "-rno MOUNTPOINT,FSTYPE /dev/nvme1n1") printf '/data ext4\n' ;;
  *) ;;
esac
"#;

    /// The thaw arrives while the freeze is still in `fsfreeze -f` (it
    /// timed out on the function's side): the thaw waits for it and then
    /// undoes it, so the file system ends thawed.
    #[test]
    fn a_thaw_sent_during_the_freeze_waits_and_undoes_it() {
        if !bash() {
            return;
        }
        let box_ = Instance::new("race", DATA_DISK, 0);
        let hold = box_.dir.join("hold");
        std::fs::write(&hold, "").unwrap();
        let volumes = vec![FrozenVolume {
            volume_id: "vol-0aaa".into(),
            device: "/dev/sdf".into(),
        }];
        let mut freeze = box_
            .command(&freeze_script(&volumes, Duration::from_secs(60)).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut thaw = box_.command(&thaw_script()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            thaw.try_wait().unwrap().is_none(),
            "the thaw waits for the freeze"
        );
        std::fs::remove_file(&hold).unwrap(); // the freeze completes late
        assert!(freeze.wait().unwrap().success());
        assert!(thaw.wait().unwrap().success());
        assert_eq!(
            box_.calls(),
            "-f /data\n-u /data\n",
            "frozen late, then thawed"
        );
        let _ = std::fs::remove_dir_all(&box_.dir);
    }

    /// `sync` takes longer than the watchdog's time: the watchdog counts
    /// from the last freeze, not from its own start, so what is frozen after
    /// the slow sync is still thawed by it when no thaw comes.
    #[test]
    fn the_watchdog_counts_from_the_last_freeze() {
        if !bash() {
            return;
        }
        let box_ = Instance::new("slow-sync", DATA_DISK, 2);
        let volumes = vec![FrozenVolume {
            volume_id: "vol-0aaa".into(),
            device: "/dev/sdf".into(),
        }];
        let out = box_
            .command(&freeze_script(&volumes, Duration::from_secs(1)).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            box_.calls(),
            "-f /data\n",
            "frozen after the 2 s sync, not yet thawed"
        );
        assert!(
            box_.wait_for("-u /data", Duration::from_secs(10)),
            "the watchdog thawed: {}",
            box_.calls()
        );
        let _ = std::fs::remove_dir_all(&box_.dir);
    }

    /// The stack's document does what the scripts do: SSM's substitution of
    /// its parameters (what the document's allowedPatterns admit) gives a
    /// freeze that freezes and a thaw that thaws.
    #[test]
    fn the_document_freezes_and_thaws_like_the_scripts() {
        if !bash() {
            return;
        }
        let box_ = Instance::new("document", DATA_DISK, 0);
        let p = FreezeParameters::of(
            &[FrozenVolume {
                volume_id: "vol-0aaa".into(),
                device: "/dev/sdf".into(),
            }],
            Duration::from_secs(60),
        )
        .unwrap();
        let render = |action: &str| {
            document_script()
                .replace("{{ action }}", action)
                .replace("{{ serials }}", &p.serials)
                .replace("{{ devices }}", &p.devices)
                .replace("{{ watchdog }}", &p.watchdog)
        };
        assert!(box_.command(&render("freeze")).status().unwrap().success());
        assert_eq!(box_.calls(), "-f /data\n");
        let thaw = box_.command(&render("thaw")).output().unwrap();
        assert!(thaw.status.success(), "{thaw:?}");
        assert_eq!(box_.calls(), "-f /data\n-u /data\n");
        assert!(
            !document_script().contains("vol0aaa"),
            "placeholders, not values"
        );
        let _ = std::fs::remove_dir_all(&box_.dir);
    }
}
