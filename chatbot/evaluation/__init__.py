"""Evaluation of a trained chatbot: reply-quality metrics over a validation set."""
