//! Schedules: days of the week and time ranges, in the gateway's time zone.
