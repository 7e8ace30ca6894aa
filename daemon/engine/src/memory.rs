//! A budget of message bytes held in memory at once. Workers take the size of a batch before
//! fetching it and give it back once it is appended, so the bodies in flight never exceed the
//! budget whatever the number of connections or jobs. A job has its own budget, or shares the
//! daemon's.

use tokio::sync::{Semaphore, SemaphorePermit};

/// Bytes are counted in KiB, so a budget of up to 4 TiB fits the semaphore's permits.
const UNIT: u64 = 1024;

/// Message bytes that may be in memory at once.
pub struct MemoryBudget {
    permits: Semaphore,
    units: u32,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryBudget({} KiB)", self.units)
    }
}

impl MemoryBudget {
    /// A budget of `bytes` (at least 1 MiB).
    pub fn new(bytes: u64) -> Self {
        let units = (bytes / UNIT).clamp(1024, u64::from(u32::MAX >> 3)) as u32;
        Self {
            permits: Semaphore::new(units as usize),
            units,
        }
    }

    /// The budget, bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Waits until `bytes` may be held, and holds them until the permit is dropped. A request
    /// larger than the whole budget takes the whole budget: one large message then travels
    /// alone.
    pub async fn take(&self, bytes: u64) -> SemaphorePermit<'_> {
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(self.units)) as u32;
        self.permits
            .acquire_many(units)
            .await
            .expect("the budget's semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_above_the_budget_takes_all_of_it_and_waits_for_the_rest() {
        let budget = MemoryBudget::new(4 * 1024 * 1024);
        let small = budget.take(1024 * 1024).await;
        // 30 MB asks for everything: it must wait for the small one.
        let big = budget.take(30_000_000);
        tokio::pin!(big);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut big)
                .await
                .is_err()
        );
        drop(small);
        let big = big.await;
        assert_eq!(budget.permits.available_permits(), 0);
        drop(big);
        assert_eq!(budget.permits.available_permits(), 4096);
    }
}
