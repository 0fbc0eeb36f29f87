# comment
FROM
