//! Sensor alarms become incidents: every critical alarm raised opens one at the device's grid
//! (deduplicated by alarm id, so a redelivered event or a second node changes nothing), under
//! the subclass its device profile maps to; when the alarm clears, the incident is annotated
//! (the case itself goes on until someone has checked the cause).

use yunnao_bus::{Bus, LagPolicy, SubscribeOptions};
use yunnao_governance::Governance;
use yunnao_governance::incidents::{Location, Report, Source};
use yunnao_sensing::Sensing;
use yunnao_sensing::alarms::{AlarmChange, AlarmChanged};

pub fn spawn(bus: &Bus, sensing: Sensing, governance: Governance) -> anyhow::Result<()> {
    // Block, not drop: a lost critical alarm would be a case nobody handles.
    let mut subscription = bus.subscribe(
        "sensing.alarm.>",
        SubscribeOptions {
            buffer: 4096,
            lag: LagPolicy::Block,
        },
    )?;
    tokio::spawn(async move {
        while let Some(envelope) = subscription.next_event().await {
            let event: AlarmChanged = match envelope.decode() {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(error = %e, "undecodable alarm event");
                    continue;
                }
            };
            if let Err(problem) = handle(&sensing, &governance, &event).await {
                tracing::error!(%problem, alarm = %event.alarm.id, "turning an alarm into an incident failed");
            }
        }
    });
    Ok(())
}

pub async fn handle(
    sensing: &Sensing,
    governance: &Governance,
    event: &AlarmChanged,
) -> Result<(), yunnao_core::Problem> {
    let alarm = &event.alarm;
    match event.change {
        AlarmChange::Raised if alarm.severity == yunnao_sensing::alarms::Severity::Critical => {
            let device = sensing.get_device(&alarm.device_id).await?;
            let (name, profile, location) = match &device {
                Some(d) => (d.name.clone(), d.profile.clone(), d.location),
                None => (alarm.device_id.clone(), String::new(), None),
            };
            let mut report = Report::new(
                Source::Alarm,
                &governance.alarm_service_code(&profile),
                &format!(
                    "传感器严重告警: {name} ({}) {}",
                    alarm.device_id, alarm.message
                ),
                "system",
            );
            report.source_ref = Some(alarm.id.clone());
            report.location = location.map(|l| Location {
                lon: l.lon,
                lat: l.lat,
            });
            report.owner_department = Some(alarm.department.clone());
            report.allow_out_of_area = true;
            report.reported_at_ms = Some(alarm.raised_at_ms);
            let created = governance.report(report).await?;
            if created.created {
                tracing::info!(
                    incident = %created.incident.id,
                    alarm = %alarm.id,
                    department = ?created.incident.department,
                    "critical alarm became an incident"
                );
            }
        }
        AlarmChange::Cleared => {
            governance
                .alarm_cleared(&alarm.id, yunnao_core::time::now_ms())
                .await?;
        }
        _ => {}
    }
    Ok(())
}
