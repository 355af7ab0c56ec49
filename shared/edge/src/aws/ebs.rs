//! The EBS direct APIs: [`SnapshotBlocks`] and [`BlockReader`] on the EBS
//! client, paced by a client-side bucket shared by the run's calls.

use async_trait::async_trait;
use aws_sdk_ebs::error::ProvideErrorMetadata;
use aws_sdk_ebs::Client;

use crate::pacing::{Bucket, BucketPacing};
use crate::ports::blocks::{
    BlockRead, BlockReader, BlockRef, BlocksError, Listed, SnapshotBlocks, Walked,
};

/// Our own pace for ListChangedBlocks / ListSnapshotBlocks
/// ([`crate::pacing::EBS_DIRECT_LISTS`]).
pub const PACING: BucketPacing = crate::pacing::EBS_DIRECT_LISTS;
/// The most a page holds (the APIs' maximum): fewest requests.
const PAGE: i32 = 10_000;

#[derive(Debug)]
pub struct EbsBlocks {
    client: Client,
    bucket: Bucket,
}

impl EbsBlocks {
    pub fn new(client: Client, pacing: BucketPacing) -> Self {
        Self {
            client,
            bucket: Bucket::new(pacing),
        }
    }
}

fn error_of<E, R>(snapshot: &str, e: aws_sdk_ebs::error::SdkError<E, R>) -> BlocksError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = aws_sdk_ebs::error::DisplayErrorContext(&e).to_string();
    match e.code() {
        Some("RequestThrottledException" | "ThrottlingException" | "TooManyRequestsException") => {
            BlocksError::Throttled(message)
        }
        Some("ValidationException") => BlocksError::Unreadable {
            snapshot: snapshot.to_string(),
            message,
        },
        Some("ResourceNotFoundException") => BlocksError::Gone {
            snapshot: snapshot.to_string(),
            message,
        },
        Some("AccessDeniedException") => BlocksError::AccessDenied(message),
        _ => BlocksError::Other(message),
    }
}

fn index(i: Option<i32>) -> Option<u32> {
    i.and_then(|i| u32::try_from(i).ok())
}

#[async_trait]
impl SnapshotBlocks for EbsBlocks {
    async fn diff(&self, older: Option<&str>, newer: &str) -> Result<Walked, BlocksError> {
        let mut walked = Walked::default();
        let mut token: Option<String> = None;
        loop {
            self.bucket.acquire().await;
            walked.requests += 1;
            let next: Result<Option<String>, BlocksError> = match older {
                Some(older) => self
                    .client
                    .list_changed_blocks()
                    .first_snapshot_id(older)
                    .second_snapshot_id(newer)
                    .max_results(PAGE)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map(|page| {
                        for b in page.changed_blocks() {
                            if let Some(i) = index(b.block_index()) {
                                walked.diff.add(
                                    i,
                                    b.first_block_token().is_some(),
                                    b.second_block_token().is_some(),
                                );
                            }
                        }
                        page.next_token().map(String::from)
                    })
                    .map_err(|e| error_of(newer, e)),
                None => {
                    self.client
                        .list_snapshot_blocks()
                        .snapshot_id(newer)
                        .max_results(PAGE)
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .map(|page| {
                            walked.diff.newer.extend(
                                page.blocks().iter().filter_map(|b| index(b.block_index())),
                            );
                            page.next_token().map(String::from)
                        })
                        .map_err(|e| error_of(newer, e))
                }
            };
            let next = match next {
                Ok(next) => next,
                Err(e) => {
                    if matches!(e, BlocksError::Throttled(_)) {
                        self.bucket.throttled().await;
                    }
                    return Err(e);
                }
            };
            self.bucket.succeeded().await;
            match next.filter(|t| !t.is_empty()) {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                _ => return Ok(walked),
            }
        }
    }
}

impl EbsBlocks {
    /// One paced request: the bucket waits before it, hears a throttle.
    async fn paced<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, BlocksError>>,
    ) -> Result<T, BlocksError> {
        self.bucket.acquire().await;
        match call.await {
            Ok(t) => {
                self.bucket.succeeded().await;
                Ok(t)
            }
            Err(e) => {
                if matches!(e, BlocksError::Throttled(_)) {
                    self.bucket.throttled().await;
                }
                Err(e)
            }
        }
    }
}

/// The last index a page covers when it has a next page.
fn last_if_more(next: Option<&str>, blocks: &[BlockRef]) -> Option<u32> {
    next.filter(|t| !t.is_empty())
        .map(|_| blocks.last().map_or(0, |b| b.index))
}

fn clamp_page(max: u32) -> i32 {
    i32::try_from(max.clamp(100, 10_000)).unwrap_or(PAGE)
}

fn start(from: u32) -> i32 {
    i32::try_from(from).unwrap_or(i32::MAX)
}

#[async_trait]
impl BlockReader for EbsBlocks {
    async fn list_blocks(
        &self,
        snapshot: &str,
        from: u32,
        max: u32,
    ) -> Result<Listed, BlocksError> {
        self.paced(async {
            let page = self
                .client
                .list_snapshot_blocks()
                .snapshot_id(snapshot)
                .starting_block_index(start(from))
                .max_results(clamp_page(max))
                .send()
                .await
                .map_err(|e| error_of(snapshot, e))?;
            let blocks: Vec<BlockRef> = page
                .blocks()
                .iter()
                .filter_map(|b| {
                    Some(BlockRef {
                        index: index(b.block_index())?,
                        token: b.block_token()?.to_string(),
                    })
                })
                .collect();
            Ok(Listed {
                last_if_more: last_if_more(page.next_token(), &blocks),
                blocks,
            })
        })
        .await
    }

    async fn changed_blocks(
        &self,
        older: &str,
        newer: &str,
        from: u32,
        max: u32,
    ) -> Result<Listed, BlocksError> {
        self.paced(async {
            let page = self
                .client
                .list_changed_blocks()
                .first_snapshot_id(older)
                .second_snapshot_id(newer)
                .starting_block_index(start(from))
                .max_results(clamp_page(max))
                .send()
                .await
                .map_err(|e| error_of(newer, e))?;
            let blocks: Vec<BlockRef> = page
                .changed_blocks()
                .iter()
                .filter_map(|b| {
                    Some(BlockRef {
                        index: index(b.block_index())?,
                        token: b.second_block_token().unwrap_or_default().to_string(),
                    })
                })
                .collect();
            Ok(Listed {
                last_if_more: last_if_more(page.next_token(), &blocks),
                blocks,
            })
        })
        .await
    }

    async fn read_block(&self, snapshot: &str, block: &BlockRef) -> Result<BlockRead, BlocksError> {
        self.paced(async {
            let out = self
                .client
                .get_snapshot_block()
                .snapshot_id(snapshot)
                .block_index(i32::try_from(block.index).unwrap_or(i32::MAX))
                .block_token(&block.token)
                .send()
                .await
                .map_err(|e| error_of(snapshot, e))?;
            let checksum = out.checksum().unwrap_or_default().to_string();
            let algorithm = out
                .checksum_algorithm()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            let data = out
                .block_data
                .collect()
                .await
                .map_err(|e| BlocksError::Other(format!("reading block {}: {e}", block.index)))?
                .into_bytes()
                .to_vec();
            Ok(BlockRead {
                data,
                checksum,
                algorithm,
            })
        })
        .await
    }
}
