"""Reusable code of the course "Text-to-Image from Scratch"; each notebook imports what it teaches from here."""
from helpers.config import CourseConfig, get_config, seed_everything
from helpers.errors import CourseError

__all__ = ["CourseConfig", "get_config", "seed_everything", "CourseError"]
