//! The live participant panels: one roster per visit in memory, rebuilt from the stored events
//! when first needed, and a broadcast channel that wakes every open panel on a change. Events
//! another replica recorded arrive through the store's change feed
//! ([`visitbridge_store::AuditRepo::visit_changes`]), which makes the held roster be read again.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::broadcast;
use visitbridge_store::{
    AuditRepo, ParticipantClass, StoredEvent, VisitChange, VisitEventKind, VisitId,
};
use visitbridge_visit::{PanelView, Party, PartyClass, RosterChange, RosterState};

struct LiveVisit {
    roster: RosterState,
    changed: broadcast::Sender<()>,
}

/// The rosters of visits with live activity or an open panel.
#[derive(Clone)]
pub struct LiveHub {
    store: Arc<dyn AuditRepo>,
    visits: Arc<Mutex<HashMap<VisitId, LiveVisit>>>,
    /// Counts the changes the feed announced: a roster read while one arrived is read again
    /// (the announcement found no roster to refresh yet).
    announced: Arc<AtomicU64>,
}

/// The roster change a stored event made.
fn change_of(event: &StoredEvent) -> Option<RosterChange> {
    let party = || {
        event.participant.as_ref().map(|p| Party {
            class: match p.class {
                ParticipantClass::OrganizationUser => PartyClass::Staff,
                ParticipantClass::Anonymous | ParticipantClass::AcsGuest => PartyClass::Guest,
                ParticipantClass::Application => PartyClass::App,
            },
            id: p.id.clone(),
        })
    };
    Some(match event.kind {
        VisitEventKind::CallStarted => RosterChange::CallStarted,
        VisitEventKind::CallEnded => RosterChange::CallEnded,
        VisitEventKind::ParticipantInLobby => RosterChange::InLobby(party()?),
        VisitEventKind::ParticipantJoined => RosterChange::Joined(party()?),
        VisitEventKind::ParticipantLeft => RosterChange::Left(party()?),
    })
}

impl LiveHub {
    /// A hub reading stored events from `store`.
    pub fn new(store: Arc<dyn AuditRepo>) -> Self {
        Self {
            store,
            visits: Arc::new(Mutex::new(HashMap::new())),
            announced: Arc::new(AtomicU64::new(0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<VisitId, LiveVisit>> {
        self.visits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes sure the visit's roster is in memory (from its stored events).
    async fn ensure(&self, visit: &VisitId) -> Result<(), visitbridge_store::StoreError> {
        if self.lock().contains_key(visit) {
            return Ok(());
        }
        let before = self.announced.load(Ordering::SeqCst);
        let roster = self.read_roster(visit).await?;
        self.lock()
            .entry(visit.clone())
            .or_insert_with(|| LiveVisit {
                roster,
                changed: broadcast::channel(16).0,
            });
        // Something was announced while the events were read: it may be missing from them.
        if self.announced.load(Ordering::SeqCst) != before {
            self.refresh(visit).await;
        }
        Ok(())
    }

    /// The roster the visit's stored events make.
    async fn read_roster(
        &self,
        visit: &VisitId,
    ) -> Result<RosterState, visitbridge_store::StoreError> {
        let events = self.store.events_for_visit(visit).await?;
        let mut roster = RosterState::new();
        for change in events.iter().filter_map(change_of) {
            roster.apply(&change);
        }
        Ok(roster)
    }

    /// Applies a change (after it was stored, if it is stored at all) and wakes the panels.
    pub async fn publish(&self, visit: &VisitId, change: &RosterChange) {
        if let Err(e) = self.ensure(visit).await {
            tracing::warn!(error = %e, "cannot load a visit's roster");
        }
        let mut visits = self.lock();
        let live = visits.entry(visit.clone()).or_insert_with(|| LiveVisit {
            roster: RosterState::new(),
            changed: broadcast::channel(16).0,
        });
        live.roster.apply(change);
        // No open panel is not an error.
        let _ = live.changed.send(());
    }

    /// The panel as `viewer` sees it now, and a receiver that is woken on each change.
    pub async fn subscribe(
        &self,
        visit: &VisitId,
        viewer: Option<&str>,
    ) -> Result<(PanelView, broadcast::Receiver<()>), visitbridge_store::StoreError> {
        self.ensure(visit).await?;
        let visits = self.lock();
        match visits.get(visit) {
            Some(live) => Ok((live.roster.view(viewer), live.changed.subscribe())),
            None => Ok((RosterState::new().view(viewer), broadcast::channel(1).1)),
        }
    }

    /// Rebuilds a held visit's roster from its stored events and wakes its panels: for events
    /// another replica recorded (see [`Self::follow`]). A visit nobody holds is left alone (it is
    /// read from the store when a panel opens).
    pub async fn refresh(&self, visit: &VisitId) {
        if !self.lock().contains_key(visit) {
            return;
        }
        let roster = match self.read_roster(visit).await {
            Ok(roster) => roster,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload a visit's roster");
                return;
            }
        };
        if let Some(live) = self.lock().get_mut(visit) {
            live.roster = roster;
            let _ = live.changed.send(());
        }
    }

    /// Follows the store's feed of visits with new events (other replicas' recordings) until it
    /// ends, refreshing the rosters it names; everything held after a gap in the feed.
    /// A burst of announcements is taken together: each visit is read once.
    pub async fn follow(self, mut changes: broadcast::Receiver<VisitChange>) {
        loop {
            let mut visits = HashSet::new();
            let mut everything = false;
            let mut next = changes.recv().await;
            loop {
                self.announced.fetch_add(1, Ordering::SeqCst);
                match next {
                    Ok(VisitChange::Visit(visit)) => {
                        visits.insert(visit);
                    }
                    Ok(VisitChange::Unknown) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        everything = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                next = match changes.try_recv() {
                    Ok(change) => Ok(change),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Closed) => {
                        Err(broadcast::error::RecvError::Closed)
                    }
                };
            }
            if everything {
                visits.extend(self.lock().keys().cloned());
            }
            for visit in &visits {
                self.refresh(visit).await;
            }
        }
    }

    /// Forgets the rosters no panel is watching (they are rebuilt from the store when needed).
    pub fn evict_idle(&self) {
        self.lock()
            .retain(|_, live| live.changed.receiver_count() > 0);
    }

    /// The panel as `viewer` sees it now.
    pub fn view(&self, visit: &VisitId, viewer: Option<&str>) -> PanelView {
        self.lock()
            .get(visit)
            .map(|live| live.roster.view(viewer))
            .unwrap_or_else(|| RosterState::new().view(viewer))
    }
}

#[cfg(test)]
mod tests {
    use visitbridge_store::SqliteStore;
    use visitbridge_visit::Presence;

    use super::*;

    #[tokio::test]
    async fn panels_are_woken_and_idle_rosters_forgotten() {
        let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let hub = LiveHub::new(store);
        let visit = VisitId::new("v-1").unwrap();
        let guest = Party {
            class: PartyClass::Guest,
            id: "g".into(),
        };
        let (first, mut woken) = hub.subscribe(&visit, None).await.unwrap();
        assert!(first.participants.is_empty());
        hub.publish(&visit, &RosterChange::InLobby(guest)).await;
        woken.recv().await.unwrap();
        let view = hub.view(&visit, None);
        assert_eq!(view.participants[0].presence, Presence::Lobby);
        assert!(view.patient_waiting);

        // Watched rosters stay; unwatched ones go (the store has the stored events).
        hub.evict_idle();
        assert_eq!(hub.view(&visit, None).participants.len(), 1);
        drop(woken);
        hub.evict_idle();
        assert!(hub.view(&visit, None).participants.is_empty());
    }
}
