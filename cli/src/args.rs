//! The command line (docs/restore.md, "The command-line tool"). clap
//! refuses bad arguments with exit code 2; a command that is refused or
//! fails exits 1 with one line saying why.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ebs-lifecycle",
    version,
    about = "Restore volumes from the snapshots an ebs-lifecycle stack made, prove a snapshot restores, hold snapshots no tag can release, check a policy document and see what it would do.",
    after_help = "Credentials: the default AWS chain. AWS_ENDPOINT_URL is honoured (the local emulator).\nExit codes: 0 done, 1 refused or failed (one line says why), 2 bad arguments."
)]
pub struct Cli {
    /// The deployment (its stack name), as its Descriptions and ledger name it.
    #[arg(long, env = "EBS_LIFECYCLE_STACK", global = true)]
    pub stack: Option<String>,
    /// The region of the stack (default: the AWS configuration's).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// The stack's ledger table (its `LedgerTableName` output).
    #[arg(long, env = "EBS_LIFECYCLE_LEDGER_TABLE", global = true)]
    pub ledger_table: Option<String>,
    /// The stack's policy document (a file): with it, a snapshot's slot is
    /// also checked against its policy's schedule, as the functions do.
    #[arg(long, env = "EBS_LIFECYCLE_POLICIES", global = true)]
    pub policies: Option<std::path::PathBuf>,
    /// The stack's selector tag key (its `SelectorTagKey` parameter): a
    /// restored volume never carries it, unless it replaces its source.
    #[arg(
        long,
        env = "EBS_LIFECYCLE_SELECTOR_TAG_KEY",
        default_value = "Backup",
        global = true
    )]
    pub selector_tag_key: String,
    /// The stack's `DefaultPolicy` parameter, if it sets one: `plan` then
    /// covers every volume no selector tag decides, as the functions do.
    #[arg(long, env = "EBS_LIFECYCLE_DEFAULT_POLICY", global = true)]
    pub default_policy: Option<String>,
    /// `json` prints one JSON object (docs/restore.md gives its fields).
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a volume from the snapshot the stack provably made.
    #[command(subcommand)]
    Restore(Restore),
    /// Keep a snapshot, or every snapshot of a volume, until a date: a
    /// ledger hold, which no tag writer can lift.
    Hold(HoldArgs),
    /// What the stack knows of a snapshot: whether it made it (or why
    /// not), the rules that keep it, what the next expiry does with it,
    /// holds and locks.
    Explain {
        /// The snapshot (snap-…).
        id: String,
    },
    /// One restore drill now, as verify-restores runs it: a volume made
    /// from the snapshot, checked, a sample of its blocks read against
    /// their checksums and against the snapshot before it, deleted.
    Verify {
        /// The snapshot (snap-…).
        id: String,
        /// Where the drill volume is made (default: RESTORE_DRILL_ZONE's
        /// default, the region's zone a).
        #[arg(long)]
        az: Option<String>,
        /// The snapshot is the stack's disaster-recovery copy in this
        /// region: drilled there (its zone a unless --az).
        #[arg(long)]
        from: Option<String>,
        /// Fail the drill if the volume is not available after this many
        /// minutes (at most 15: a drill older than 20 minutes is taken for
        /// a killed run's by verify-restores' cleanup).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=15))]
        wait_minutes: u64,
    },
    /// End a ledger hold now.
    Release {
        /// The snapshot (snap-…) or volume (vol-…) held.
        id: String,
    },
    /// What create-snapshots and expire-snapshots would do now with this
    /// policy document, in the account and region the credentials reach:
    /// the volumes due in each policy's current slot, the snapshots expiry
    /// would delete. Read only. Before the stack's first snapshot no
    /// ledger is read.
    Plan {
        /// The policy document (JSON), checked as `validate` checks it.
        file: std::path::PathBuf,
        /// Plan as of this moment (RFC 3339; default now): the slot due
        /// then, the snapshots kept then.
        #[arg(long)]
        at: Option<String>,
        /// The stack's MaxDeletions (default 200): over how many days the
        /// deletions would spread.
        #[arg(long)]
        max_deletions: Option<u32>,
    },
    /// Check a policy document exactly as the functions do at start-up.
    Validate {
        /// The policy document (JSON).
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum Restore {
    /// One volume: the newest completed snapshot of it, at or before --at.
    Volume(RestoreVolume),
    /// Every volume of an instance, from one moment (one slot when the
    /// stack has one covering them all); --replace swaps them in.
    Instance(RestoreInstance),
}

#[derive(Debug, Args)]
pub struct RestoreInstance {
    /// The instance (i-…).
    pub id: String,
    /// The moment to restore (RFC 3339; default now).
    #[arg(long)]
    pub at: Option<String>,
    /// Swap the restored volumes in at the same devices (root included);
    /// the current ones are detached and kept. The instance must be
    /// stopped, or give --stop.
    #[arg(long)]
    pub replace: bool,
    /// Stop the instance for the swap, and start it again after.
    #[arg(long, requires = "replace")]
    pub stop: bool,
    /// With --replace: swap in each volume's newest even when no slot has
    /// a snapshot of every volume (they come from different moments).
    #[arg(long, requires = "replace")]
    pub allow_spread: bool,
    /// Leave this device as it is (repeatable): a scratch volume nobody
    /// backs up, say.
    #[arg(long = "exclude", value_name = "DEVICE")]
    pub exclude: Vec<String>,
    /// Print the device map it would make; make nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Give up waiting after this many minutes (per step).
    #[arg(long, default_value_t = 30)]
    pub wait_minutes: u64,
}

#[derive(Debug, Args)]
pub struct RestoreVolume {
    /// The volume to bring back (vol-…), or the snapshot to restore (snap-…).
    pub id: String,
    /// The moment to restore (RFC 3339; default now).
    #[arg(long)]
    pub at: Option<String>,
    /// Restore from the stack's disaster-recovery copies in this region.
    #[arg(long)]
    pub from: Option<String>,
    /// The new volume's zone (default: the source volume's).
    #[arg(long)]
    pub az: Option<String>,
    /// The new volume's type (default: the source volume's, else gp3).
    #[arg(long = "type")]
    pub volume_type: Option<String>,
    /// IOPS of the new volume (io1, io2, gp3; default: the source's if the
    /// type is the same).
    #[arg(long)]
    pub iops: Option<i32>,
    /// Throughput of the new volume in MiB/s (gp3; default: the source's).
    #[arg(long)]
    pub throughput: Option<i32>,
    /// Encrypt under this KMS key (default: the snapshot's).
    #[arg(long)]
    pub kms_key: Option<String>,
    /// Attach the new volume to this instance (with --device).
    #[arg(long, requires = "device")]
    pub attach: Option<String>,
    /// The device name to attach it at (e.g. /dev/sdf).
    #[arg(long, requires = "attach")]
    pub device: Option<String>,
    /// Print the choice and the volume it would make; make nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Give up waiting for the volume after this many minutes.
    #[arg(long, default_value_t = 30)]
    pub wait_minutes: u64,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The snapshot (snap-…) or volume (vol-…) to keep.
    pub id: String,
    /// When the hold ends (RFC 3339), at most ten years from now.
    #[arg(long)]
    pub until: String,
    /// Why (shown on the report).
    #[arg(long)]
    pub reason: String,
    /// Replace a hold that would otherwise end later.
    #[arg(long)]
    pub force: bool,
}
