"""The end-to-end demo (`edge-trainer demo`): pump data, a local broker, the agent and a simulated fleet."""
