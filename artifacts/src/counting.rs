//! An [`ObjectStore`] that counts the requests made through it, by kind, and passes each on to
//! the store it wraps. Inject it into a remote with [`crate::remote::Remote::from_store`] to see
//! what a push or pull asks of the server.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// Requests made through a [`Counting`] store, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Requests {
    /// Object reads (whole or ranged; one per call, also for `get_ranges`).
    pub get: u64,
    /// Metadata reads (HEAD).
    pub head: u64,
    /// Single-request writes.
    pub put: u64,
    /// Listings started (each may be several pages on the server).
    pub list: u64,
    /// Entries those listings returned (objects, and common prefixes for a delimited one).
    pub listed: u64,
    /// Objects deleted (or asked to be).
    pub delete: u64,
    /// Multipart requests: uploads started, parts sent, uploads completed or aborted.
    pub multipart: u64,
    /// Server-side copies and renames.
    pub copy: u64,
}

impl Requests {
    /// All requests but `listed` (which counts entries, not requests).
    pub fn total(&self) -> u64 {
        self.get + self.head + self.put + self.list + self.delete + self.multipart + self.copy
    }
}

/// Shared counters, one per kind of request.
#[derive(Debug, Default)]
struct Counters {
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    listed: AtomicU64,
    delete: AtomicU64,
    multipart: AtomicU64,
    copy: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Wraps an object store and counts every request made through it.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<Counters>,
}

impl Counting {
    /// Counts the requests made to `inner`, starting from zero.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Counting {
        Counting {
            inner,
            counts: Arc::default(),
        }
    }

    /// The requests counted so far.
    pub fn requests(&self) -> Requests {
        let c = &*self.counts;
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Requests {
            get: read(&c.get),
            head: read(&c.head),
            put: read(&c.put),
            list: read(&c.list),
            listed: read(&c.listed),
            delete: read(&c.delete),
            multipart: read(&c.multipart),
            copy: read(&c.copy),
        }
    }

    /// Counts a listing and each entry it yields.
    fn counted_listing(
        &self,
        listing: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        bump(&self.counts.list);
        let counts = Arc::clone(&self.counts);
        listing.inspect(move |_| bump(&counts.listed)).boxed()
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        bump(&self.counts.put);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        bump(&self.counts.multipart);
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner: upload,
            counts: Arc::clone(&self.counts),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        bump(if options.head {
            &self.counts.head
        } else {
            &self.counts.get
        });
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        bump(&self.counts.get);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counts = Arc::clone(&self.counts);
        let counted = locations.inspect(move |_| bump(&counts.delete)).boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counted_listing(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counted_listing(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        bump(&self.counts.list);
        let listed = self.inner.list_with_delimiter(prefix).await?;
        let entries = (listed.objects.len() + listed.common_prefixes.len()) as u64;
        self.counts.listed.fetch_add(entries, Ordering::Relaxed);
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        bump(&self.counts.copy);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        bump(&self.counts.copy);
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose parts, completion and abort are counted.
#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    counts: Arc<Counters>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        bump(&self.counts.multipart);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        bump(&self.counts.multipart);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        bump(&self.counts.multipart);
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutMode};

    use super::*;

    /// Every kind of request is counted once per call, and the wrapped store sees it.
    #[test]
    fn counts_each_kind_of_request() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let counting = Counting::new(Arc::clone(&inner));
        rt.block_on(async {
            let a = Path::from("d/a");
            counting.put(&a, PutPayload::from("x")).await.unwrap();
            let create = PutOptions::from(PutMode::Create);
            let again = counting.put_opts(&a, PutPayload::from("y"), create).await;
            assert!(matches!(
                again,
                Err(object_store::Error::AlreadyExists { .. })
            ));
            assert_eq!(counting.head(&a).await.unwrap().size, 1);
            assert_eq!(
                &counting.get(&a).await.unwrap().bytes().await.unwrap()[..],
                b"x"
            );
            let mut upload = counting.put_multipart(&Path::from("d/b")).await.unwrap();
            upload.put_part(PutPayload::from("part")).await.unwrap();
            upload.complete().await.unwrap();
            let listed: Vec<_> = counting.list(Some(&Path::from("d"))).collect().await;
            assert_eq!(listed.len(), 2);
            let top = counting.list_with_delimiter(None).await.unwrap();
            assert_eq!(top.common_prefixes, vec![Path::from("d")]);
            counting.copy(&a, &Path::from("d/c")).await.unwrap();
            counting.delete(&a).await.unwrap();
            assert!(
                inner.head(&a).await.is_err(),
                "the delete reached the store"
            );
            assert_eq!(inner.head(&Path::from("d/b")).await.unwrap().size, 4);
        });
        let r = counting.requests();
        let expected = Requests {
            get: 1,
            head: 1,
            put: 2,
            list: 2,
            listed: 3,
            delete: 1,
            multipart: 3,
            copy: 1,
        };
        assert_eq!(r, expected);
        assert_eq!(r.total(), 11);
    }
}
