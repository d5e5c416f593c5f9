"""The job kinds (onboarding, refresh, bulk refresh) and the daily schedule, composed from queue, prices and factors."""
