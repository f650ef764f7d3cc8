"""Training: schedules, the masked loss, checkpoints, and the loop that `chatbot train` runs."""
