"""Where registrations and Map-Requests go: the MappingSystem seam and its modes."""
