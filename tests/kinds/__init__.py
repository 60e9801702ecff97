"""A throw-away assignment with one exercise of every kind the grader serves."""
