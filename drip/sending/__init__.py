"""The sending engine: due times (schedule), the tick that claims due lessons (dispatch),
the send task's work (delivery), the circuit that stops sending on refused credentials,
and the shared send rate."""
