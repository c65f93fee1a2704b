"""cocotb benches, their pytest runners, and the shared driver/monitor/scoreboard code."""
