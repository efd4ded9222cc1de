"""What tests import besides the library under test, in one place:

- ids: command and entity ids no other test or run uses (`new_command_id`, `new_entity_id`).
"""
