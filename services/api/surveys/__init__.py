"""/v1/surveys — household surveys (扫楼 / 入户走访): the routes (``controller``), what reads
answer (``schemas``) and their SQL with the note's masking (``queries``).

Recording: operator or admin whose scope contains the community or grid. Reads: every role
of the subtree; the note is masked (``[masked]``) unless the caller is an admin, whose
clear-text reads are recorded in ``pii_reveals`` like members' (docs/privacy.md). Erasing a
note (admin) deletes the survey's data key.
"""

from services.api.surveys.controller import SurveyController

__all__ = ["SurveyController"]
