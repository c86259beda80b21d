"""The course: load and validate course files, render lessons and the confirmation email,
and write previews. No database and no Flask."""
