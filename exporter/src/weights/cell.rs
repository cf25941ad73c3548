//! The weights in force, shared between the weights source that loads them and the projects
//! sources that compute the legacy families with them.

use std::sync::{Arc, PoisonError, RwLock};

use super::Weights;

/// The weights in force, shared between the weights source and the projects sources.
#[derive(Debug)]
pub struct WeightsCell {
    weights: RwLock<Option<Arc<Weights>>>,
    /// Becomes true once the first load was tried, successful or not.
    attempted: tokio::sync::watch::Sender<bool>,
}

impl Default for WeightsCell {
    fn default() -> Self {
        Self {
            weights: RwLock::new(None),
            attempted: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl WeightsCell {
    /// The weights in force, or `None` before the first set has loaded.
    pub fn get(&self) -> Option<Arc<Weights>> {
        self.weights
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `weights` in force.
    pub fn set(&self, weights: Arc<Weights>) {
        *self.weights.write().unwrap_or_else(PoisonError::into_inner) = Some(weights);
    }

    /// Records that a load was tried, successful or not.
    pub fn record_attempt(&self) {
        self.attempted.send_replace(true);
    }

    /// Waits until the first load has been tried, so a projects source's first refresh after
    /// start does not needlessly go without its legacy families.
    pub async fn first_attempt(&self) {
        let mut rx = self.attempted.subscribe();
        let _ = rx.wait_for(|tried| *tried).await;
    }
}

/// What a projects source needs to know about weights.
#[derive(Debug, Clone, Default)]
pub enum WeightsInput {
    /// No weights configured: every weight is 1.
    #[default]
    None,
    /// Configured: the legacy families wait for the first set.
    Shared(Arc<WeightsCell>),
}

impl WeightsInput {
    /// Before the first refresh of a projects source: wait for the first weights attempt.
    pub async fn ready(&self) {
        if let Self::Shared(cell) = self {
            cell.first_attempt().await;
        }
    }

    /// The weights to compute with now; `None` means "not loaded yet, withhold the legacy
    /// families".
    pub fn current(&self) -> Option<Arc<Weights>> {
        match self {
            Self::None => Some(Arc::new(Weights::default())),
            Self::Shared(cell) => cell.get(),
        }
    }
}
