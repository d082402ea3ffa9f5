//! The referral rule: a user may name one referrer, never themselves, and never
//! close a circle of any length.
//!
//! Links never change once set, so the chain above a referrer can only grow at
//! its top. Walking the chain to its top and then writing "my referrer is X"
//! on the condition that the top still has no referrer is enough to keep the
//! graph a forest even when writes race (see `UserStore::set_referrer`).
//! A deleted user's tombstone keeps its link, so a circle cannot be closed
//! through somebody who left either. Users are named by any `Id` (storage
//! uses [`UserId`](crate::user::UserId)).

/// Where a walk up the referrer chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEnd<Id> {
    /// The chain reaches the user who wants to join it: joining would close a circle.
    Cycle,
    /// The chain's top: the one user in it without a referrer.
    Top(Id),
}

/// Default for `REFERRAL_MAX_DEPTH`: each link walked is one strongly
/// consistent read (0.5 RRU, a few ms), so joining a chain this deep costs
/// up to 1,000 reads; deeper chains are refused (409) instead of walked.
pub const DEFAULT_MAX_CHAIN_DEPTH: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError<E> {
    #[error("referrer chain is longer than {0}")]
    TooDeep(usize),
    #[error(transparent)]
    Lookup(E),
}

/// Walks from `referrer` up through each user's referrer until the top, or
/// until it meets `me`, looking at most `max_depth` users. `referrer_of`
/// looks up one link.
pub async fn walk_to_top<Id, E, F, Fut>(
    me: &Id,
    referrer: &Id,
    max_depth: usize,
    mut referrer_of: F,
) -> Result<ChainEnd<Id>, WalkError<E>>
where
    Id: Clone + Eq,
    F: FnMut(Id) -> Fut,
    Fut: Future<Output = Result<Option<Id>, E>>,
{
    let mut current = referrer.clone();
    for _ in 0..max_depth {
        if &current == me {
            return Ok(ChainEnd::Cycle);
        }
        match referrer_of(current.clone())
            .await
            .map_err(WalkError::Lookup)?
        {
            Some(next) => current = next,
            None => return Ok(ChainEnd::Top(current)),
        }
    }
    Err(WalkError::TooDeep(max_depth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn p(s: &str) -> String {
        s.to_string()
    }

    async fn walk(links: &[(&str, &str)], me: &str, referrer: &str) -> ChainEnd<String> {
        let links: HashMap<String, String> = links.iter().map(|(a, b)| (p(a), p(b))).collect();
        walk_to_top(&p(me), &p(referrer), DEFAULT_MAX_CHAIN_DEPTH, |user| {
            std::future::ready(Ok::<_, ()>(links.get(&user).cloned()))
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn referrer_without_referrer_is_the_top() {
        assert_eq!(walk(&[], "A", "B").await, ChainEnd::Top(p("B")));
    }

    #[tokio::test]
    async fn two_user_circle_is_refused() {
        // B was referred by A; A now enters B's code.
        assert_eq!(walk(&[("B", "A")], "A", "B").await, ChainEnd::Cycle);
    }

    #[tokio::test]
    async fn long_circle_is_refused() {
        // B's referrer is A and C's is B; A entering C's code would close A → C → B → A.
        let links = [("B", "A"), ("C", "B")];
        assert_eq!(walk(&links, "A", "C").await, ChainEnd::Cycle);
        let chain: Vec<(String, String)> = (1..50)
            .map(|i| (format!("U{i}"), format!("U{}", i - 1)))
            .collect();
        let chain: Vec<(&str, &str)> = chain
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(walk(&chain, "U0", "U49").await, ChainEnd::Cycle);
    }

    #[tokio::test]
    async fn joining_a_foreign_chain_finds_its_top() {
        let links = [("B", "A"), ("C", "B")];
        assert_eq!(walk(&links, "D", "C").await, ChainEnd::Top(p("A")));
    }

    #[tokio::test]
    async fn referring_yourself_is_a_cycle() {
        assert_eq!(walk(&[], "A", "A").await, ChainEnd::Cycle);
    }

    #[tokio::test]
    async fn corrupted_loop_in_storage_stops() {
        let links: HashMap<String, String> = [(p("X"), p("Y")), (p("Y"), p("X"))].into();
        let result = walk_to_top(&p("A"), &p("X"), 100, |u| {
            std::future::ready(Ok::<_, ()>(links.get(&u).cloned()))
        })
        .await;
        assert_eq!(result, Err(WalkError::TooDeep(100)));
    }

    #[tokio::test]
    async fn the_walk_stops_at_the_depth_limit() {
        // D joins C: C, B and A are looked at (depth 3).
        let links: HashMap<String, String> = [(p("C"), p("B")), (p("B"), p("A"))].into();
        let lookup = |u: String| std::future::ready(Ok::<_, ()>(links.get(&u).cloned()));
        assert_eq!(
            walk_to_top(&p("D"), &p("C"), 3, lookup).await,
            Ok(ChainEnd::Top(p("A")))
        );
        assert_eq!(
            walk_to_top(&p("D"), &p("C"), 2, lookup).await,
            Err(WalkError::TooDeep(2))
        );
    }

    #[tokio::test]
    async fn lookup_errors_surface() {
        let result = walk_to_top(&p("A"), &p("B"), 10, |_| {
            std::future::ready(Err::<Option<String>, _>("down"))
        })
        .await;
        assert_eq!(result, Err(WalkError::Lookup("down")));
    }
}
