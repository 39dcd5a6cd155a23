@rem drrestore: druvaa restore (MSI has no links; the Linux packages link drrestore to druvaa instead).
@"%~dp0druvaa.exe" restore %*
@exit /b %errorlevel%
