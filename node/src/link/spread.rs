//! A simulated network run as several `wafleet sim` processes: each device dials the
//! one [`sim_of`] picks by its id.
//!
//! One simulator process holds a socket per connected device and may hold only so many
//! open files, so a large simulated fleet is spread over several. The rule lives in
//! `wafleet-cluster-config` because whoever acts as the devices' phones (the load
//! driver scanning QR codes, reading inboxes) must pick the same simulator; the
//! simulators themselves know nothing of it. With one simulator this is that simulator.

use std::sync::Arc;

use async_trait::async_trait;
use wafleet_cluster_config::sim_of;

use super::{FramePipe, LinkError, SimBlob, SimDialer};
use crate::media::ByteStream;

/// Dials, for each device, the simulator of its id among `sims` (in the configured
/// order: the index is what the rule picks).
#[derive(Debug, Clone)]
pub struct SimSpread {
    sims: Vec<Arc<dyn SimDialer>>,
}

/// A spread needs at least one simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a simulated network needs at least one simulator")]
pub struct NoSimulator;

impl SimSpread {
    /// The simulators, in the order every node and the load driver list them.
    pub fn new(sims: Vec<Arc<dyn SimDialer>>) -> Result<SimSpread, NoSimulator> {
        if sims.is_empty() {
            return Err(NoSimulator);
        }
        Ok(SimSpread { sims })
    }

    /// How many simulators the network has.
    pub fn len(&self) -> usize {
        self.sims.len()
    }

    /// Never true: [`SimSpread::new`] refuses an empty list.
    pub fn is_empty(&self) -> bool {
        self.sims.is_empty()
    }
}

#[async_trait]
impl SimDialer for SimSpread {
    async fn dial(&self, device_id: &str) -> Result<FramePipe, LinkError> {
        self.sim(device_id).dial(device_id).await
    }

    async fn upload_media(
        &self,
        device_id: &str,
        mime: &str,
        body: ByteStream,
    ) -> Result<SimBlob, LinkError> {
        self.sim(device_id)
            .upload_media(device_id, mime, body)
            .await
    }

    async fn download_media(&self, device_id: &str, handle: &str) -> Result<ByteStream, LinkError> {
        self.sim(device_id).download_media(device_id, handle).await
    }
}

impl SimSpread {
    /// The simulator `device_id` belongs to: the one it dials, and whose media servers
    /// hold its files.
    fn sim(&self, device_id: &str) -> &dyn SimDialer {
        self.sims[sim_of(device_id, self.sims.len())].as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;

    /// Records which device dialed it.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait]
    impl SimDialer for Recorder {
        async fn dial(&self, device_id: &str) -> Result<FramePipe, LinkError> {
            self.0.lock().unwrap().push(device_id.to_owned());
            let (tx, _) = mpsc::channel(1);
            let (_, rx) = mpsc::channel(1);
            Ok(FramePipe { tx, rx })
        }
    }

    #[tokio::test]
    async fn each_device_dials_the_simulator_the_shared_rule_picks() {
        let sims: Vec<Arc<Recorder>> = (0..3).map(|_| Arc::default()).collect();
        let spread = SimSpread::new(
            sims.iter()
                .map(|s| s.clone() as Arc<dyn SimDialer>)
                .collect(),
        )
        .unwrap();
        assert_eq!(spread.len(), 3);
        let ids: Vec<String> = (0..300).map(|i| format!("dev-{i}")).collect();
        for id in &ids {
            spread.dial(id).await.unwrap();
        }
        for (index, sim) in sims.iter().enumerate() {
            let dialed = sim.0.lock().unwrap().clone();
            assert!(dialed.len() > 50, "sim {index} got only {}", dialed.len());
            assert!(dialed.iter().all(|id| sim_of(id, 3) == index));
        }
    }

    #[test]
    fn no_simulator_is_refused() {
        assert_eq!(SimSpread::new(Vec::new()).unwrap_err(), NoSimulator);
    }
}
