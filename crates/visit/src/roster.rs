//! The live participant panel: who is in the lobby, connected or gone, labelled without names.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use visitbridge_graph::{EventKind, ParticipantEvent, ParticipantKind};

/// What kind of party a participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartyClass {
    /// A user of an Entra organisation (staff); the id is their object id.
    Staff,
    /// Someone without an account (the patient, a proxy, an interpreter on a link).
    Guest,
    /// An app or bot (recording, transcription).
    App,
}

/// A participant, by class and id only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    /// What kind.
    pub class: PartyClass,
    /// Object id (staff), opaque id (guests) or app id.
    pub id: String,
}

/// One change to a meeting's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RosterChange {
    /// The call started.
    CallStarted,
    /// Someone is waiting in the lobby.
    InLobby(Party),
    /// Someone connected.
    Joined(Party),
    /// Someone left.
    Left(Party),
    /// The call ended: everyone is gone.
    CallEnded,
}

impl RosterChange {
    /// The change a Graph participant event makes.
    pub fn from_event(event: &ParticipantEvent) -> Option<Self> {
        let party = || {
            let p = event.participant.as_ref()?;
            Some(match &p.kind {
                ParticipantKind::OrganizationUser { object_id, .. } => Party {
                    class: PartyClass::Staff,
                    id: object_id.as_str().to_owned(),
                },
                ParticipantKind::Anonymous { opaque_id }
                | ParticipantKind::AcsGuest { opaque_id } => Party {
                    class: PartyClass::Guest,
                    id: opaque_id.clone(),
                },
                ParticipantKind::Application { app_id } => Party {
                    class: PartyClass::App,
                    id: app_id.clone(),
                },
            })
        };
        Some(match event.kind {
            EventKind::CallStarted => Self::CallStarted,
            EventKind::CallEnded => Self::CallEnded,
            EventKind::ParticipantInLobby => Self::InLobby(party()?),
            EventKind::ParticipantJoined => Self::Joined(party()?),
            EventKind::ParticipantLeft => Self::Left(party()?),
        })
    }
}

/// Where a participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Waiting in the lobby to be admitted.
    Lobby,
    /// In the call.
    Connected,
    /// Was there, left.
    Disconnected,
}

/// A meeting's roster: each party's presence, in order of first appearance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RosterState {
    order: Vec<Party>,
    presence: HashMap<Party, Presence>,
    call_active: bool,
}

/// One line of the panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanelEntry {
    /// "Clinician (you)", "Staff 2", "Patient / guest 1", "App 1".
    pub label: String,
    /// Where they are.
    pub presence: Presence,
    /// Whether this is a guest (the patient, as far as Teams can tell).
    pub guest: bool,
}

/// What the clinician's panel shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanelView {
    /// Participants in order of first appearance.
    pub participants: Vec<PanelEntry>,
    /// A guest is in the call: the patient is ready to be seen.
    pub patient_connected: bool,
    /// A guest is waiting in the lobby.
    pub patient_waiting: bool,
    /// The call is on.
    pub call_active: bool,
}

impl RosterState {
    /// An empty roster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change.
    pub fn apply(&mut self, change: &RosterChange) {
        let mut set = |party: &Party, presence| {
            if !self.presence.contains_key(party) {
                self.order.push(party.clone());
            }
            self.presence.insert(party.clone(), presence);
        };
        match change {
            RosterChange::CallStarted => self.call_active = true,
            RosterChange::InLobby(p) => set(p, Presence::Lobby),
            RosterChange::Joined(p) => {
                set(p, Presence::Connected);
                self.call_active = true;
            }
            RosterChange::Left(p) => set(p, Presence::Disconnected),
            RosterChange::CallEnded => {
                self.call_active = false;
                for presence in self.presence.values_mut() {
                    *presence = Presence::Disconnected;
                }
            }
        }
    }

    /// The panel as seen by the staff member with object id `viewer` (labelled "Clinician (you)").
    pub fn view(&self, viewer: Option<&str>) -> PanelView {
        let (mut staff, mut guests, mut apps) = (0, 0, 0);
        let participants: Vec<PanelEntry> = self
            .order
            .iter()
            .map(|party| {
                let label = match party.class {
                    PartyClass::Staff if Some(party.id.as_str()) == viewer => {
                        "Clinician (you)".to_owned()
                    }
                    PartyClass::Staff => {
                        staff += 1;
                        format!("Staff {staff}")
                    }
                    PartyClass::Guest => {
                        guests += 1;
                        format!("Patient / guest {guests}")
                    }
                    PartyClass::App => {
                        apps += 1;
                        format!("App {apps}")
                    }
                };
                PanelEntry {
                    label,
                    presence: self
                        .presence
                        .get(party)
                        .copied()
                        .unwrap_or(Presence::Disconnected),
                    guest: party.class == PartyClass::Guest,
                }
            })
            .collect();
        let guest_in = |presence| {
            participants
                .iter()
                .any(|p| p.guest && p.presence == presence)
        };
        PanelView {
            patient_connected: guest_in(Presence::Connected),
            patient_waiting: guest_in(Presence::Lobby),
            call_active: self.call_active,
            participants,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff(id: &str) -> Party {
        Party {
            class: PartyClass::Staff,
            id: id.into(),
        }
    }

    fn guest(id: &str) -> Party {
        Party {
            class: PartyClass::Guest,
            id: id.into(),
        }
    }

    fn check(
        changes: &[RosterChange],
        viewer: &str,
        expected: &[(&str, Presence)],
        connected: bool,
    ) {
        let mut roster = RosterState::new();
        for c in changes {
            roster.apply(c);
        }
        let view = roster.view(Some(viewer));
        let got: Vec<(&str, Presence)> = view
            .participants
            .iter()
            .map(|p| (p.label.as_str(), p.presence))
            .collect();
        assert_eq!(got, expected, "{changes:?}");
        assert_eq!(view.patient_connected, connected, "{changes:?}");
    }

    #[test]
    fn the_panel_follows_lobby_admission_and_departure() {
        use Presence::*;
        use RosterChange::*;
        check(
            &[Joined(staff("me"))],
            "me",
            &[("Clinician (you)", Connected)],
            false,
        );
        check(
            &[Joined(staff("me")), InLobby(guest("g1"))],
            "me",
            &[("Clinician (you)", Connected), ("Patient / guest 1", Lobby)],
            false,
        );
        check(
            &[
                Joined(staff("me")),
                InLobby(guest("g1")),
                Joined(guest("g1")),
            ],
            "me",
            &[
                ("Clinician (you)", Connected),
                ("Patient / guest 1", Connected),
            ],
            true,
        );
        check(
            &[
                InLobby(guest("g1")),
                Joined(staff("other")),
                Joined(guest("g2")),
                Left(guest("g1")),
            ],
            "me",
            &[
                ("Patient / guest 1", Disconnected),
                ("Staff 1", Connected),
                ("Patient / guest 2", Connected),
            ],
            true,
        );
        check(
            &[Joined(staff("me")), Joined(guest("g1")), CallEnded],
            "me",
            &[
                ("Clinician (you)", Disconnected),
                ("Patient / guest 1", Disconnected),
            ],
            false,
        );
    }

    #[test]
    fn waiting_is_told_apart_from_connected() {
        let mut roster = RosterState::new();
        roster.apply(&RosterChange::InLobby(guest("g")));
        let view = roster.view(None);
        assert!(view.patient_waiting && !view.patient_connected);
        assert!(!view.call_active);
    }
}
