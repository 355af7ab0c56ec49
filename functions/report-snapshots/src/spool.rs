//! The report's per-snapshot rows, written to the function's temporary
//! storage as each batch is priced (docs/report.md, "Files"): a run holds
//! one batch's snapshots and a line per volume, never every snapshot of the
//! account. Two files: the volumes as JSON lines (spliced into report.json
//! as written, [`CostVolumes`]' serialisation) and cost.csv itself, header
//! first, uploaded as it is.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;

use serde::ser::{Error as _, SerializeSeq};
use serde::{Serialize, Serializer};
use tempfile::NamedTempFile;

use crate::render;
use crate::rows::VolumeCost;

/// The files being written.
pub struct Spool {
    json: BufWriter<NamedTempFile>,
    csv: BufWriter<NamedTempFile>,
    volumes: usize,
}

impl Spool {
    /// Two new files in the temporary directory (Lambda's `/tmp`).
    pub fn new() -> io::Result<Self> {
        let json = BufWriter::new(NamedTempFile::new()?);
        let mut csv = BufWriter::new(NamedTempFile::new()?);
        csv.write_all(render::COST_CSV_HEADER.as_bytes())?;
        Ok(Self {
            json,
            csv,
            volumes: 0,
        })
    }

    /// Write `volumes` with their snapshots, then drop the snapshots from
    /// memory (each keeps its `snapshot_count`).
    pub fn take(&mut self, volumes: &mut [VolumeCost]) -> io::Result<()> {
        for v in volumes {
            serde_json::to_writer(&mut self.json, v)?;
            self.json.write_all(b"\n")?;
            let mut rows = String::new();
            render::cost_csv_rows(v, &mut rows);
            self.csv.write_all(rows.as_bytes())?;
            self.volumes += 1;
            v.snapshots = Vec::new();
        }
        Ok(())
    }

    /// Flushed and read-only from here on.
    pub fn finish(self) -> io::Result<Spooled> {
        Ok(Spooled {
            json: self.json.into_inner().map_err(|e| e.into_error())?,
            csv: self.csv.into_inner().map_err(|e| e.into_error())?,
            volumes: self.volumes,
        })
    }
}

/// The written files; deleted when dropped.
#[derive(Debug)]
pub struct Spooled {
    json: NamedTempFile,
    csv: NamedTempFile,
    volumes: usize,
}

impl Spooled {
    /// cost.csv, whole.
    pub fn cost_csv(&self) -> &Path {
        self.csv.path()
    }

    /// Each volume's JSON, in the order written.
    fn volumes(&self) -> io::Result<impl Iterator<Item = io::Result<String>>> {
        Ok(BufReader::new(File::open(self.json.path())?).lines())
    }
}

/// The cost's volumes: in memory without their snapshots once spooled,
/// serialised with them (read back from the spool, a volume at a time).
#[derive(Debug, Clone, Default)]
pub struct CostVolumes {
    list: Vec<VolumeCost>,
    spooled: Option<Arc<Spooled>>,
}

impl CostVolumes {
    /// From here on the volumes serialise from `spooled`, which holds
    /// every one of them.
    pub fn spooled(&mut self, spooled: Spooled) {
        if spooled.volumes == self.list.len() {
            self.spooled = Some(Arc::new(spooled));
        }
    }

    pub fn spooled_files(&self) -> Option<&Spooled> {
        self.spooled.as_deref()
    }
}

impl Deref for CostVolumes {
    type Target = Vec<VolumeCost>;
    fn deref(&self) -> &Self::Target {
        &self.list
    }
}

impl DerefMut for CostVolumes {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.list
    }
}

impl<'a> IntoIterator for &'a CostVolumes {
    type Item = &'a VolumeCost;
    type IntoIter = std::slice::Iter<'a, VolumeCost>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

impl FromIterator<VolumeCost> for CostVolumes {
    fn from_iter<I: IntoIterator<Item = VolumeCost>>(iter: I) -> Self {
        Self {
            list: iter.into_iter().collect(),
            spooled: None,
        }
    }
}

impl Serialize for CostVolumes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(spooled) = &self.spooled else {
            return self.list.serialize(serializer);
        };
        let mut seq = serializer.serialize_seq(Some(spooled.volumes))?;
        for line in spooled.volumes().map_err(S::Error::custom)? {
            let line = line.map_err(S::Error::custom)?;
            let raw = serde_json::value::RawValue::from_string(line).map_err(S::Error::custom)?;
            seq.serialize_element(&raw)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::SnapshotCost;

    fn volume(id: &str, snapshots: usize) -> VolumeCost {
        VolumeCost {
            volume_id: id.into(),
            policy: "gold".into(),
            standard_bytes: 1,
            archive_bytes: 0,
            monthly_usd: 0.5,
            expiry_frees_bytes: 0,
            archive_saves_usd: 0.0,
            snapshot_count: snapshots,
            snapshots: (0..snapshots)
                .map(|i| SnapshotCost {
                    id: format!("snap-{id}-{i}"),
                    time: "2026-03-01T00:00:00Z".into(),
                    tier: "standard",
                    full_bytes: Some(8),
                    unique_bytes: Some(4),
                    added_bytes: Some(2),
                    retained_by: vec!["daily"],
                    expires: "never".into(),
                    expiry_deletes: false,
                    archive_saving_usd: None,
                })
                .collect(),
        }
    }

    #[test]
    fn spooled_volumes_serialise_as_the_same_json_and_csv_as_in_memory() {
        let in_memory: CostVolumes = [volume("vol-1", 3), volume("vol-2", 0), volume("vol-3", 2)]
            .into_iter()
            .collect();
        let expected_json = serde_json::to_string(&in_memory).unwrap();
        let mut expected_csv = render::COST_CSV_HEADER.to_string();
        for v in in_memory.iter() {
            render::cost_csv_rows(v, &mut expected_csv);
        }

        let mut spooled = in_memory.clone();
        let mut spool = Spool::new().unwrap();
        // Two batches, as the run writes them.
        spool.take(&mut spooled[..1]).unwrap();
        spool.take(&mut spooled[1..]).unwrap();
        assert!(
            spooled.iter().all(|v| v.snapshots.is_empty()),
            "nothing per snapshot is left in memory"
        );
        assert_eq!(spooled[0].snapshot_count, 3);
        spooled.spooled(spool.finish().unwrap());
        assert_eq!(serde_json::to_string(&spooled).unwrap(), expected_json);
        let files = spooled.spooled_files().unwrap();
        assert_eq!(
            std::fs::read_to_string(files.cost_csv()).unwrap(),
            expected_csv
        );
    }

    #[test]
    fn a_spool_missing_volumes_is_not_used() {
        let mut volumes: CostVolumes = [volume("vol-1", 1), volume("vol-2", 1)]
            .into_iter()
            .collect();
        let mut spool = Spool::new().unwrap();
        spool.take(&mut volumes[..1]).unwrap();
        volumes.spooled(spool.finish().unwrap());
        assert!(volumes.spooled_files().is_none());
        // The volumes serialise from memory: the one spooled without its
        // snapshots (its count says how many), the other whole.
        let json: serde_json::Value = serde_json::to_value(&volumes).unwrap();
        assert_eq!(json[0]["snapshot_count"], 1);
        assert!(json[0].get("snapshots").is_none());
        assert_eq!(json[1]["snapshots"].as_array().unwrap().len(), 1);
    }
}
