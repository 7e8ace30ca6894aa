//! The job store from async code: the store (fjall) is synchronous, so every call runs on a
//! blocking thread.

use crate::error::EngineError;

/// Runs a store call on a blocking thread; its error becomes [`EngineError::Store`].
pub(crate) async fn store_call<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, migrated_store::StoreError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::GaveUp {
            passes: 0,
            last: format!("store task failed: {e}"),
        })?
        .map_err(EngineError::Store)
}
