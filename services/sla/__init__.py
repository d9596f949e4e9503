"""SLA service: task clocks on China's working-day calendar."""
