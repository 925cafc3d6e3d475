//! [`ByteStream`]: media bytes in flight, and turning a reader into one.

use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Media bytes as they arrive: what a put reads and a get returns. An `Err` item ends
/// the stream: it failed.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// How much one read takes from a file or reader: large enough that a file is read in
/// few blocking calls, small enough that many downloads at once stay cheap.
const CHUNK: usize = 64 * 1024;

/// `reader` as a stream of chunks of at most 64 KiB, ending at its end.
pub fn reader_stream<R>(reader: R) -> ByteStream
where
    R: AsyncRead + Send + Unpin + 'static,
{
    stream::try_unfold(reader, |mut reader| async move {
        let mut chunk = BytesMut::with_capacity(CHUNK);
        match reader.read_buf(&mut chunk).await? {
            0 => Ok(None),
            _ => Ok(Some((chunk.freeze(), reader))),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;

    #[tokio::test]
    async fn a_reader_streams_in_bounded_chunks_and_ends() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let chunks: Vec<Bytes> = reader_stream(io::Cursor::new(data.clone()))
            .try_collect()
            .await
            .unwrap();
        assert!(chunks.len() >= 4, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
        assert_eq!(chunks.concat(), data);
        let empty: Vec<Bytes> = reader_stream(io::Cursor::new(Vec::new()))
            .try_collect()
            .await
            .unwrap();
        assert!(empty.is_empty());
    }
}
