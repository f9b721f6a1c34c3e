//! The incident workflow as data: every [`State`], every [`Action`], and one table,
//! [`STEPS`], of which states an action starts from, who may take it and where it leads. The
//! API, the workbench page and the simulator all read it; nothing else spells the workflow.

use serde::{Deserialize, Serialize};
use yunnao_core::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Received,
    Registered,
    Rejected,
    Dispatched,
    Handling,
    Verification,
    Closed,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Received,
        State::Registered,
        State::Rejected,
        State::Dispatched,
        State::Handling,
        State::Verification,
        State::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Received => "received",
            State::Registered => "registered",
            State::Rejected => "rejected",
            State::Dispatched => "dispatched",
            State::Handling => "handling",
            State::Verification => "verification",
            State::Closed => "closed",
        }
    }

    /// The state's name on every page and in every answer (one vocabulary: the workbench, the
    /// case, the event list and Open311's status notes all say the same).
    pub fn name_zh(self) -> &'static str {
        match self {
            State::Received => "待立案",
            State::Registered => "待派遣",
            State::Rejected => "不予立案",
            State::Dispatched => "待签收",
            State::Handling => "处置中",
            State::Verification => "待核查",
            State::Closed => "已结案",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            State::Received => "awaiting registration",
            State::Registered => "awaiting dispatch",
            State::Rejected => "rejected",
            State::Dispatched => "awaiting acceptance",
            State::Handling => "being handled",
            State::Verification => "awaiting check",
            State::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_open(self) -> bool {
        !matches!(self, State::Rejected | State::Closed)
    }
}

/// A workflow step an operator, a department or a grid worker takes on an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Register,
    Dispatch,
    Accept,
    Complete,
    Close,
    Reject,
    SendBack,
    Reassign,
    Rework,
    Merge,
}

/// Who may take a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The command centre: operators of the centre department, platform admins.
    Centre,
    /// The handling department's staff (operator, dept_admin), or the centre.
    Handler,
    /// The grid worker assigned to the incident's grid, or the centre.
    Verifier,
}

impl Actor {
    /// Why someone else may not, for the 403.
    pub fn who(self) -> &'static str {
        match self {
            Actor::Centre => {
                "only the command centre (operators of the centre department, platform admins) does this"
            }
            Actor::Handler => {
                "only the handling department's staff (operator, dept_admin) act on it"
            }
            Actor::Verifier => {
                "only the command centre or the grid worker assigned to its grid check it"
            }
        }
    }
}

/// One row of the workflow: `action` from any of `from`, by `by`, leads to `to`.
#[derive(Debug)]
pub struct Step {
    pub action: Action,
    pub from: &'static [State],
    pub by: Actor,
    pub to: State,
}

use State::*;

/// The workflow. Forward steps first: the workbench offers a state's steps in this order.
pub const STEPS: &[Step] = &[
    step(Action::Register, &[Received], Actor::Centre, Registered),
    step(Action::Dispatch, &[Registered], Actor::Centre, Dispatched),
    step(Action::Accept, &[Dispatched], Actor::Handler, Handling),
    step(Action::Complete, &[Handling], Actor::Handler, Verification),
    step(Action::Close, &[Verification], Actor::Verifier, Closed),
    step(
        Action::Reject,
        &[Received, Registered],
        Actor::Centre,
        Rejected,
    ),
    step(
        Action::SendBack,
        &[Dispatched, Handling],
        Actor::Handler,
        Registered,
    ),
    step(
        Action::Reassign,
        &[Dispatched, Handling],
        Actor::Centre,
        Dispatched,
    ),
    step(Action::Rework, &[Verification], Actor::Verifier, Handling),
    step(
        Action::Merge,
        &[Received, Registered, Dispatched, Handling],
        Actor::Centre,
        Closed,
    ),
];

const fn step(action: Action, from: &'static [State], by: Actor, to: State) -> Step {
    Step {
        action,
        from,
        by,
        to,
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Dispatch => "dispatch",
            Action::Accept => "accept",
            Action::Complete => "complete",
            Action::Close => "close",
            Action::Reject => "reject",
            Action::SendBack => "send_back",
            Action::Reassign => "reassign",
            Action::Rework => "rework",
            Action::Merge => "merge",
        }
    }

    /// The step's name as a person reads it (a button, a line of a case's history).
    pub fn name_zh(self) -> &'static str {
        match self {
            Action::Register => "立案",
            Action::Dispatch => "派遣",
            Action::Accept => "签收",
            Action::Complete => "办结",
            Action::Close => "核查通过，结案",
            Action::Reject => "不予立案",
            Action::SendBack => "退回",
            Action::Reassign => "改派",
            Action::Rework => "核查不通过，返工",
            Action::Merge => "合并",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Action::Register => "Register",
            Action::Dispatch => "Dispatch",
            Action::Accept => "Accept",
            Action::Complete => "Report done",
            Action::Close => "Checked: close",
            Action::Reject => "Reject",
            Action::SendBack => "Send back",
            Action::Reassign => "Reassign",
            Action::Rework => "Checked: rework",
            Action::Merge => "Merge",
        }
    }

    /// The action named `text`; anything else is a 422 that lists them.
    pub fn parse(text: &str) -> Result<Action, Problem> {
        STEPS
            .iter()
            .map(|s| s.action)
            .find(|a| a.as_str() == text)
            .ok_or_else(|| {
                Problem::validation(format!(
                    "unknown action {text:?}: one of register, reject, dispatch, accept, send_back, reassign, complete, rework, close, merge"
                ))
            })
    }

    /// The action's row of [`STEPS`].
    pub fn step(self) -> &'static Step {
        // Every action has exactly one row (tested below).
        STEPS.iter().find(|s| s.action == self).unwrap_or(&STEPS[0])
    }

    /// Whether the step names the department that takes the case (and sets its deadline).
    pub fn names_department(self) -> bool {
        matches!(self, Action::Dispatch | Action::Reassign)
    }

    /// Whether the step is taken on the incident alone (a merge also names the incident it
    /// repeats, so it is offered from the list, not from the incident's page).
    pub fn on_its_own(self) -> bool {
        self != Action::Merge
    }
}

impl State {
    /// The steps that start from this state, in [`STEPS`] order.
    pub fn actions(self) -> impl Iterator<Item = Action> {
        STEPS
            .iter()
            .filter(move |s| s.from.contains(&self))
            .map(|s| s.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_one_step_and_parses_back() {
        for step in STEPS {
            assert_eq!(
                STEPS.iter().filter(|s| s.action == step.action).count(),
                1,
                "{:?}",
                step.action
            );
            assert_eq!(Action::parse(step.action.as_str()).ok(), Some(step.action));
            assert_eq!(step.action.step().to, step.to);
        }
        assert!(Action::parse("teleport").is_err());
    }

    #[test]
    fn closed_and_rejected_incidents_take_no_step() {
        assert_eq!(Closed.actions().count(), 0);
        assert_eq!(Rejected.actions().count(), 0);
        let offered: Vec<&str> = Verification.actions().map(Action::as_str).collect();
        assert_eq!(offered, ["close", "rework"]);
    }
}
