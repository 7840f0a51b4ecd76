"""The workshop's support kit: settings, the fake Stations API, the data set and its
answer key, getting a Redis, workers, progress bars and the command line.

Nothing here is lesson content: the lessons live in solutions/ and chapters/.
"""
