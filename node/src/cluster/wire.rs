//! Prost messages as ractor_cluster payloads.

use ractor::BytesConvertable;

/// A prost message carried in a remote actor message. A payload that does not decode
/// becomes the message's default (empty) value, which receivers ignore, rather than a
/// panic in the node's session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wire<T>(pub T);

impl<T: prost::Message + Default> BytesConvertable for Wire<T> {
    fn into_bytes(self) -> Vec<u8> {
        self.0.encode_to_vec()
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        Wire(T::decode(bytes.as_slice()).unwrap_or_default())
    }
}
